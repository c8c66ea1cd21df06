// LoRA training runs: ε-DPO against the base with the adapters off (step-1 loss ln 2, only the
// adapters change, PEFT checkpoint files, adapter-only optimizer state), bit-exact resume with
// dropout, SFT LoRA then DPO from that adapter, and the option checks of train and sft.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, io } from '../lib/index'
import { readMetrics } from '../lib/train/metrics-log'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const quiet = { log: () => {} }

function setup(t: { teardown(fn: () => void): void }) {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 64)
  return { model, work, data }
}

const host = (file: string) => Object.fromEntries(Object.entries(io.loadSafetensors(file)).map(([n, x]) => [n, Array.from(x.toArray() as Float32Array)]))

t.test('ε-DPO with LoRA: ln 2 at step 1, only adapters change, PEFT checkpoint', async (t) => {
  const { model, work, data } = setup(t)
  const out = path.join(work, 'run')
  const baseBefore = host(path.join(model, 'model.safetensors'))
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out,
      batchSize: 4,
      maxSteps: 4,
      learningRate: 5e-3,
      warmupRatio: 0,
      beta: 0.5,
      maxLength: 32,
      loraR: 4,
      loraAlpha: 8,
      loraDropout: 0,
    },
    quiet,
  )
  t.equal(trainer.reference!.lora, undefined, 'the reference has no adapters')
  const state = await trainer.train()
  t.equal(state.step, 4)
  const train = readMetrics(out).filter((l) => 'loss' in l)
  t.ok(Math.abs(train[0]!.loss! - Math.LN2) < 1e-6, `step-1 loss ${train[0]!.loss} = ln 2`)
  t.ok(train[3]!.loss! < train[0]!.loss!, 'the adapters learn')
  // The base is untouched: the policy's base tensors equal the file's bytes.
  for (const [name, p] of trainer.policy.namedParameters()) t.same(Array.from(p.toArray() as Float32Array), baseBefore[name], `${name} unchanged`)
  // The reference shares those tensors (no copy).
  const ref = trainer.reference!.namedParameters()
  t.same(Array.from(ref.get('model.embed_tokens.weight')!.toArray() as Float32Array), baseBefore['model.embed_tokens.weight'])
  const ckpt = path.join(out, 'checkpoint-4')
  const files = fs.readdirSync(ckpt).sort()
  for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'tokenizer.json'])
    t.ok(files.includes(f), f)
  t.notOk(files.includes('model.safetensors'), 'no full model copy')
  const cfg = JSON.parse(fs.readFileSync(path.join(ckpt, 'adapter_config.json'), 'utf8'))
  t.match(cfg, {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: 4,
    lora_alpha: 8,
    lora_dropout: 0,
    bias: 'none',
    use_rslora: false,
    base_model_name_or_path: path.resolve(model),
  })
  const opt = Object.keys(io.loadSafetensors(path.join(ckpt, 'optimizer.safetensors')))
  t.ok(opt.length > 0 && opt.every((k) => /lora_[AB]\.weight$/.test(k)), 'optimizer state holds adapters only')
  // The checkpoint loads as a model (base + adapter) and reproduces the trained policy.
  const loaded = await CausalLM.fromPretrained(ckpt)
  const probe = io.loadSafetensors(path.join(ckpt, 'adapter_model.safetensors'))
  t.same(Object.keys(probe).sort(), [...loaded.loraParameters().keys()].sort())
})

t.test('LoRA resume (with dropout) is bit-exact', async (t) => {
  const { model, work, data } = setup(t)
  const config = {
    model,
    data: [data],
    batchSize: 4,
    gradAccumulation: 2,
    maxSteps: 5,
    learningRate: 3e-3,
    beta: 0.5,
    saveEvery: 2,
    maxLength: 32,
    loraR: 2,
    loraDropout: 0.3,
    gradientCheckpointing: true,
  }
  const full = path.join(work, 'full')
  await (await Trainer.create({ ...config, out: full }, quiet)).train()
  const cut = path.join(work, 'cut')
  const first = await Trainer.create({ ...config, out: cut }, quiet)
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 3) abort.abort()
  })
  await first.train({ signal: abort.signal })
  const resumed = await (await Trainer.create({}, { ...quiet, resume: cut })).train()
  t.equal(resumed.step, 5)
  t.same(host(path.join(cut, 'checkpoint-5', 'adapter_model.safetensors')), host(path.join(full, 'checkpoint-5', 'adapter_model.safetensors')))
  t.same(host(path.join(cut, 'checkpoint-5', 'optimizer.safetensors')), host(path.join(full, 'checkpoint-5', 'optimizer.safetensors')))
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip))
})

t.test('SFT LoRA, then DPO from that adapter: the reference is base + adapter (ln 2 again)', async (t) => {
  const { model, work, data } = setup(t)
  const sftOut = path.join(work, 'sft')
  await (
    await SftTrainer.create(
      { model, data: [data], out: sftOut, batchSize: 4, maxSteps: 3, learningRate: 1e-2, maxLength: 32, loraR: 4, loraTargetModules: ['q_proj,v_proj'] },
      quiet,
    )
  ).train()
  const adapter = path.join(sftOut, 'checkpoint-3')
  const cfg = JSON.parse(fs.readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8'))
  t.same(cfg.target_modules, ['q_proj', 'v_proj'])
  const out = path.join(work, 'dpo')
  const trainer = await Trainer.create(
    { model, data: [data], out, batchSize: 4, maxSteps: 1, learningRate: 1e-3, maxLength: 32, method: 'dpo', adapter, loraDropout: 0 },
    quiet,
  )
  t.same(trainer.reference!.loraParameters().size, trainer.policy.loraParameters().size, 'the reference carries the starting adapter')
  await trainer.train()
  const first = readMetrics(out).find((l) => 'loss' in l)!
  t.ok(Math.abs(first.loss! - Math.LN2) < 1e-6, `step-1 loss ${first.loss} = ln 2`)
  // Flags that disagree with the adapter's config are refused.
  await t.rejects(
    Trainer.create({ model, data: [data], out: path.join(work, 'x'), maxSteps: 1, adapter, loraR: 8 }, quiet),
    /--lora-r 8 differs from .*adapter_config\.json's r 4/,
  )
})

t.test('LoRA option checks', async (t) => {
  const { model, work, data } = setup(t)
  const base = { model, data: [data], maxSteps: 1 }
  await t.rejects(Trainer.create({ ...base, out: path.join(work, 'a'), method: 'tr-dpo', loraR: 4 }, quiet), /tr-dpo moves the reference toward the policy/)
  await t.rejects(Trainer.create({ ...base, out: path.join(work, 'b'), loraAlpha: 16 }, quiet), /--lora-alpha needs --lora-r/)
  await t.rejects(Trainer.create({ ...base, out: path.join(work, 'c'), loraR: 0 }, quiet), /loraR/)
  await t.rejects(
    Trainer.create({ ...base, out: path.join(work, 'd'), loraR: 2, loraTargetModules: ['q_proj', 'c_attn'] }, quiet),
    /--lora-target-modules: 'c_attn' is not a linear module of this model; its linear modules are q_proj/,
  )
  await t.rejects(Trainer.create({ ...base, out: path.join(work, 'e'), adapter: work }, quiet), /--adapter .*: no adapter_config\.json/)
  await t.rejects(SftTrainer.create({ ...base, out: path.join(work, 'f'), useRslora: true }, quiet), /--use-rslora needs --lora-r/)
})
