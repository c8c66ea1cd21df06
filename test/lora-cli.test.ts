// LoRA from the command line: `edpo sft --lora-r` writes PEFT adapter checkpoints, `edpo merge-lora`
// folds one into its base (bf16 stays bf16; merged logits = base + adapter), and bad LoRA flags
// fail naming the flag or listing the model's linear modules.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, io, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { makeModelDir, tempDir, WORDS } from './helpers/data-fixtures'
import { ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')

function edpo(args: string[]) {
  const r = spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const prompt = ids([[3, 5, 7, 9, 11, 4]])
const logits = (m: CausalLM) => Array.from(m.forward(prompt, { grad: false }).logits.to('float64').toArray() as Float64Array)

t.test('edpo sft --lora-r, then edpo merge-lora', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 16)
  const out = path.join(work, 'sft')
  const r = edpo([
    'sft',
    '--model',
    model,
    '--data',
    data,
    '--out',
    out,
    '--max-steps',
    '2',
    '--batch-size',
    '4',
    '--max-length',
    '32',
    '--learning-rate',
    '0.01',
    '--lora-r',
    '4',
    '--lora-alpha',
    '8',
    '--lora-target-modules',
    'q_proj',
    'v_proj',
    'down_proj',
  ])
  t.equal(r.code, 0, r.stderr)
  const ckpt = path.join(out, 'checkpoint-2')
  t.ok(fs.existsSync(path.join(ckpt, 'adapter_model.safetensors')) && !fs.existsSync(path.join(ckpt, 'model.safetensors')))
  const merged = path.join(work, 'merged')
  const m = edpo(['merge-lora', '--adapter', ckpt, '--out', merged])
  t.equal(m.code, 0, m.stderr)
  t.match(m.stdout, /merged .* \(r 4, alpha 8, q_proj v_proj down_proj\) into .* \(float32\)/)
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) t.ok(fs.existsSync(path.join(merged, f)), f)
  const want = logits(await CausalLM.fromPretrained(ckpt))
  const got = logits(await CausalLM.fromPretrained(merged))
  const maxAbs = want.reduce((a, v) => Math.max(a, Math.abs(v)), 0)
  const c = close(got, want, 1e-5, 1e-5 * maxAbs)
  t.ok(c.ok, `merged model = base + adapter: ${describe(c)}`)
  t.not(edpo(['merge-lora', '--adapter', ckpt, '--out', merged]).code, 0, 'a non-empty --out is refused')
})

t.test('edpo merge-lora keeps a bf16 base in bf16', async (t) => {
  const base = makeModelDir(t)
  const config = tinyConfig('llama', { vocab_size: WORDS.length, hidden_size: 32, intermediate_size: 48 })
  writeTiny(base, config, tinyWeights(config, 3), 'bfloat16')
  const work = tempDir(t)
  const m = await CausalLM.fromPretrained(base, { dtype: 'bfloat16' })
  m.addLora({ r: 2, alpha: 4, dropout: 0 })
  Tensor.manualSeed(1)
  for (const [k, p] of m.loraParameters())
    if (k.endsWith('lora_B.weight')) {
      p.requiresGrad = false
      p.addInPlace(Tensor.randn(p.shape).mul(0.1))
    }
  const adapter = path.join(work, 'adapter')
  await m.saveAdapter(adapter, { baseModelNameOrPath: '/nonexistent/base' })
  const merged = path.join(work, 'merged')
  t.match(edpo(['merge-lora', '--adapter', adapter, '--out', merged]).stderr, /--base \(base_model_name_or_path of .*\) \/nonexistent\/base: no such folder/)
  const r = edpo(['merge-lora', '--adapter', adapter, '--base', base, '--out', merged])
  t.equal(r.code, 0, r.stderr)
  const tensors = io.loadSafetensors(path.join(merged, 'model.safetensors'))
  t.ok(
    Object.values(tensors).every((x) => x.dtype === 'bfloat16'),
    'every merged tensor is bf16',
  )
  t.equal(JSON.parse(fs.readFileSync(path.join(merged, 'config.json'), 'utf8')).torch_dtype, 'bfloat16')
  // W + (α/r)·B·A computed in fp32 and rounded once to bf16.
  const w = (await CausalLM.fromPretrained(base, { dtype: 'float32' })).namedParameters().get('model.layers.0.self_attn.q_proj.weight')!
  const A = m.loraParameters().get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!
  const B = m.loraParameters().get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!
  const expect = w.add(B.matmul(A).mul(2)).to('bfloat16').to('float32').toArray() as Float32Array
  t.same(Array.from(tensors['model.layers.0.self_attn.q_proj.weight']!.to('float32').toArray() as Float32Array), Array.from(expect))
})

t.test('bad LoRA flags name the flag', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 8)
  const base = ['train', '--model', model, '--data', data, '--max-steps', '1']
  const r0 = edpo([...base, '--out', path.join(work, 'a'), '--lora-r', '0'])
  t.equal(r0.code, 1)
  t.match(r0.stderr, /--lora-r: .*(greater than 0|>0)/i)
  const inf = edpo([...base, '--out', path.join(work, 'b'), '--lora-r', '4', '--lora-alpha', 'inf'])
  t.match(inf.stderr, /--lora-alpha: expected a number, got 'inf'/)
  const yaml = path.join(work, 'run.yaml')
  fs.writeFileSync(yaml, 'lora_r: 4\nlora_alpha: .inf\n')
  t.match(edpo([...base, '--out', path.join(work, 'c'), '--config', yaml]).stderr, /lora_alpha/)
  const mods = edpo([...base, '--out', path.join(work, 'd'), '--lora-r', '4', '--lora-target-modules', 'query_key_value'])
  t.match(
    mods.stderr,
    /--lora-target-modules: 'query_key_value' is not a linear module of this model; its linear modules are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
  )
  t.match(edpo([...base, '--out', path.join(work, 'e'), '--lora-dropout', '0.1']).stderr, /--lora-dropout needs --lora-r/)
  t.match(edpo([...base, '--out', path.join(work, 'f'), '--lora-r', '4', '--method', 'tr-dpo']).stderr, /tr-dpo moves the reference/)
})
