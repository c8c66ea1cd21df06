// LoRA on CausalLM: B = 0 leaves the model unchanged, adapters off is the base, fp64 finite
// differences on A and B, merge = unmerged, PEFT file names and config fields, dropout masks
// that a checkpointed recompute repeats, and bad inputs (flag / module names / mismatched tensor).
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, EdpoInputError, io, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type Arch, ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-lora-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
const prompt = ids([
  [5, 17, 3, 99, 42, 8],
  [11, 4, 88, 23, 2, 0],
])
const mask = ids([
  [1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 0],
])

function modelDir(arch: Arch, overrides = {}): string {
  const config = tinyConfig(arch, overrides)
  const dir = path.join(root, `${arch}-${JSON.stringify(overrides).replace(/\W+/g, '')}`)
  if (!fs.existsSync(path.join(dir, 'config.json'))) writeTiny(dir, config, tinyWeights(config, 5))
  return dir
}

const load = (arch: Arch, dtype: 'float32' | 'float64' | 'bfloat16' = 'float32', overrides = {}) =>
  CausalLM.fromPretrained(modelDir(arch, overrides), { dtype })
const logits = (m: CausalLM) => Array.from(m.forward(prompt, { attentionMask: mask, grad: false }).logits.to('float64').toArray() as Float64Array)

// Gives every B a deterministic non-zero value so the adapters change the model.
function perturbB(m: CausalLM, seed = 7): void {
  Tensor.manualSeed(seed)
  for (const [key, p] of m.loraParameters())
    if (key.endsWith('lora_B.weight')) {
      p.requiresGrad = false
      p.addInPlace(Tensor.randn(p.shape, { dtype: p.dtype }).mul(0.05))
      p.requiresGrad = true
    }
}

t.test('B = 0: the adapted model equals the base; adapters off is the base after B moves', async (t) => {
  const m = await load('llama')
  const before = logits(m)
  m.addLora({ r: 4, alpha: 8, dropout: 0 })
  t.same(logits(m), before, 'B = 0: identical logits')
  t.ok(
    [...m.namedParameters().values()].every((p) => !p.requiresGrad),
    'the base is frozen',
  )
  t.ok(
    [...m.loraParameters().values()].every((p) => p.requiresGrad && p.dtype === 'float32'),
    'adapters train, in fp32',
  )
  perturbB(m)
  const adapted = logits(m)
  t.notSame(adapted, before, 'B ≠ 0 changes the logits')
  t.same(
    m.withAdaptersDisabled(() => logits(m)),
    before,
    'withAdaptersDisabled: the base',
  )
  t.same(await m.withAdaptersDisabled(async () => logits(m)), before, 'async fn too')
  t.same(logits(m), adapted, 'adapters back on after the call')
  t.same(logits(m.adaptersDisabledView()), before, 'the disabled view (the LoRA reference) is the base')
  // A bf16 base with fp32 adapters.
  const b = await load('qwen2', 'bfloat16')
  const base16 = logits(b)
  b.addLora({ r: 2, targetModules: ['q_proj', 'v_proj'] })
  t.same(logits(b), base16, 'bf16 base, B = 0: identical')
  t.same(
    [...b.loraParameters().values()].map((p) => p.dtype),
    Array(8).fill('float32'),
  )
})

t.test('finite differences on A and B (fp64), with and without gradient checkpointing', async (t) => {
  for (const checkpointing of [false, true]) {
    const m = await load('llama', 'float64', { attention_bias: true })
    m.addLora({ r: 3, alpha: 5, dropout: 0, useRslora: true, targetModules: 'all-linear', seed: 3 })
    perturbB(m)
    m.train().setGradientCheckpointing(checkpointing)
    Tensor.manualSeed(99)
    const r = Tensor.randn([2, 6, m.config.vocab_size], { dtype: 'float64' })
    const loss = () => m.forward(prompt, { attentionMask: mask }).logits.mul(r).sum()
    loss().backward()
    const params = m.loraParameters()
    t.ok(
      [...m.namedParameters().values()].every((p) => p.grad === undefined),
      'no base grads',
    )
    const probes: [string, number][] = [
      ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 5],
      ['base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight', 7],
      ['base_model.model.model.layers.0.mlp.down_proj.lora_A.weight', 40],
      ['base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight', 11],
      ['base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight', 2],
    ]
    const h = 1e-6
    for (const [name, index] of probes) {
      const p = params.get(name)!
      const analytic = (p.grad!.toArray() as Float64Array)[index]!
      const bump = (delta: number) => {
        const d = new Float64Array(p.numel)
        d[index] = delta
        p.requiresGrad = false
        p.addInPlace(Tensor.from(d, p.shape))
        p.requiresGrad = true
      }
      bump(h)
      const up = loss().item()
      bump(-2 * h)
      const down = loss().item()
      bump(h)
      const c = close([analytic], [(up - down) / (2 * h)], 1e-5, 1e-7)
      t.ok(c.ok, `checkpointing ${checkpointing}: ${name}[${index}]: ${describe(c)}`)
    }
  }
})

t.test('dropout: training forwards draw masks; a checkpointed recompute repeats them', async (t) => {
  const grads: Float64Array[][] = []
  for (const checkpointing of [false, true]) {
    const m = await load('llama', 'float64')
    m.addLora({ r: 2, dropout: 0.5, seed: 1 })
    perturbB(m)
    const off = logits(m)
    m.train().setGradientCheckpointing(checkpointing)
    const out = m.forward(prompt, { attentionMask: mask })
    t.notSame(Array.from(out.logits.detach().toArray() as Float64Array), off, 'a training forward applies dropout')
    out.logits.sum().backward()
    grads.push([...m.loraParameters().values()].map((p) => p.grad!.toArray() as Float64Array))
    t.equal(m.loraDropoutState().forwards, 1)
    t.same(logits(m), off, 'no dropout without a graph (evaluation, the reference)')
  }
  // Forward 0 of both models draws the same masks; the recompute in backward must draw them again.
  grads[0]!.forEach((g, i) => {
    const c = close(grads[1]![i]!, g, 1e-12, 1e-12)
    if (!c.ok) t.fail(`adapter ${i}: ${describe(c)}`)
  })
})

t.test('mergeLora: merged forward equals the unmerged one; saveAdapter / loadAdapter round trip', async (t) => {
  const m = await load('mistral')
  m.addLora({ r: 4, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] })
  perturbB(m)
  const unmerged = logits(m)
  const dir = path.join(root, 'adapter')
  await m.saveAdapter(dir, { baseModelNameOrPath: modelDir('mistral') })
  // PEFT file names, keys and config fields.
  t.same(fs.readdirSync(dir).sort(), ['adapter_config.json', 'adapter_model.safetensors'])
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'))
  t.match(cfg, {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: 4,
    lora_alpha: 16,
    lora_dropout: 0.1,
    bias: 'none',
    use_rslora: false,
    base_model_name_or_path: modelDir('mistral'),
  })
  t.same(cfg.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])
  const saved = io.loadSafetensors(path.join(dir, 'adapter_model.safetensors'))
  const layers = m.config.num_hidden_layers
  t.equal(Object.keys(saved).length, layers * 7 * 2)
  const H = m.config.hidden_size
  t.same(saved['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']!.shape, [4, H])
  t.same(saved['base_model.model.model.layers.0.mlp.down_proj.lora_B.weight']!.shape, [H, 4])
  t.same(saved['base_model.model.model.layers.0.mlp.down_proj.lora_A.weight']!.shape, [4, m.config.intermediate_size])
  t.ok(Object.keys(saved).every((k) => /^base_model\.model\.model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/.test(k)))

  // A fresh base + loadAdapter is the same model; fromPretrained(adapter dir) loads base + adapter.
  const again = await (await load('mistral')).loadAdapter(dir)
  t.same(logits(again), unmerged, 'loadAdapter reproduces the adapted model')
  t.same(logits(await CausalLM.fromPretrained(dir)), unmerged, 'fromPretrained(adapter folder)')

  const maxAbs = unmerged.reduce((a, v) => Math.max(a, Math.abs(v)), 0)
  m.mergeLora()
  t.equal(m.lora, undefined)
  t.equal(m.loraParameters().size, 0)
  const c = close(logits(m), unmerged, 1e-5, 1e-5 * maxAbs)
  t.ok(c.ok, `merged = unmerged: ${describe(c)}`)
  // Merged in fp64 it is exact up to fp64 rounding.
  const d = await (await load('llama', 'float64')).addLora({ r: 2, dropout: 0 })
  perturbB(d)
  const u = logits(d)
  const c64 = close(logits(d.mergeLora()), u, 1e-12, 1e-12)
  t.ok(c64.ok, `fp64 merged = unmerged: ${describe(c64)}`)
})

t.test('bad inputs name the setting, the module names, the mismatched tensor', async (t) => {
  const m = await load('llama')
  t.throws(() => m.addLora({ r: 0 }), /r: the rank must be an integer > 0, got 0/)
  t.throws(() => m.addLora({ r: 2.5 }), /r: the rank must be an integer > 0/)
  t.throws(() => m.addLora({ r: 4, alpha: Number.NaN }), /alpha: must be a finite number/)
  t.throws(() => m.addLora({ r: 4, alpha: Infinity }), /alpha: must be a finite number/)
  t.throws(() => m.addLora({ r: 4, dropout: 1 }), /dropout: must lie in \[0, 1\)/)
  t.throws(
    () => m.addLora({ r: 4, targetModules: ['q_proj', 'qkv_proj'] }),
    /'qkv_proj' is not a linear module of this model; its linear modules are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
  )
  t.throws(() => m.addLora({ r: 4, rank: 3 } as never), /unknown LoRA option 'rank'/)
  t.equal(m.lora, undefined, 'nothing was attached')
  t.throws(() => m.mergeLora(), EdpoInputError)
  await t.rejects(m.saveAdapter(path.join(root, 'none')), /no LoRA adapters/)
  m.addLora({ r: 2 })
  t.throws(() => m.addLora({ r: 2 }), /already has LoRA adapters/)

  // An adapter saved for another architecture (wider hidden size): the error names the tensor.
  const other = await load('llama', 'float32', { hidden_size: 96, head_dim: 16 })
  other.addLora({ r: 2 })
  const dir = path.join(root, 'wide-adapter')
  await other.saveAdapter(dir)
  const fresh = await load('llama')
  await t.rejects(
    fresh.loadAdapter(dir),
    /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2, 96\], this model's is \[2, 64\]/,
  )
  t.equal(fresh.lora, undefined, 'a failed load leaves no adapter')
  t.same(logits(fresh), logits(await load('llama')), 'and the base unchanged')
  // Extra layers: the tensor with no place is named.
  const deep = await load('llama', 'float32', { num_hidden_layers: 3 })
  deep.addLora({ r: 2 })
  const deepDir = path.join(root, 'deep-adapter')
  await deep.saveAdapter(deepDir)
  await t.rejects((await load('llama')).loadAdapter(deepDir), /tensor 'base_model\.model\.model\.layers\.2\.[\w.]+' has no place in this model/)
  // Unsupported PEFT options are refused, not ignored.
  const dora = path.join(root, 'dora')
  fs.mkdirSync(dora)
  fs.copyFileSync(path.join(dir, 'adapter_model.safetensors'), path.join(dora, 'adapter_model.safetensors'))
  fs.writeFileSync(
    path.join(dora, 'adapter_config.json'),
    JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], use_dora: true }),
  )
  await t.rejects((await load('llama')).loadAdapter(dora), /use_dora is true; edpo supports only PEFT's default/)
  fs.writeFileSync(path.join(dora, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: '.*proj' }))
  await t.rejects((await load('llama')).loadAdapter(dora), /target_modules is the pattern/)
})
