// The Trainer end to end on a tiny random llama with a word-level tokenizer (both built here):
// metrics keys, β following spec §6, ε = 0 equal to DPO, a learnable toy set, checkpoints that
// reload, bit-exact resume, TR-DPO reference updates, and the non-finite stop.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, io } from '../lib/index'
import { readMetrics } from '../lib/train/metrics-log'
import { EdpoTrainingError, Trainer } from '../lib/train/engine'
import { close, describe } from './helpers/assert'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const quiet = { log: () => {} }

function base(t: { teardown(fn: () => void): void }) {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 64)
  return { model, work, data }
}

function weights(dir: string): Record<string, number[]> {
  const tensors = io.loadSafetensors(path.join(dir, 'model.safetensors'))
  return Object.fromEntries(Object.entries(tensors).map(([n, x]) => [n, Array.from(x.toArray() as Float32Array)]))
}

const SPEC_METRICS = [
  'loss',
  'rewards/chosen',
  'rewards/rejected',
  'rewards/accuracies',
  'rewards/margins',
  'logps/chosen',
  'logps/rejected',
  'logits/chosen',
  'logits/rejected',
  'grad_norm',
  'learning_rate',
  'kl/p_epsilon_steps',
  'kl/n_epsilon_steps',
  'kl/beta',
  'kl/avg_steps',
  'tokens_per_second',
  'step_time',
  'epoch',
]

t.test('ε-DPO run: metrics, β trajectory, learning, checkpoints', async (t) => {
  const { model, work, data } = base(t)
  const out = path.join(work, 'run')
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out,
      batchSize: 4,
      gradAccumulation: 2,
      maxSteps: 6,
      learningRate: 3e-3,
      warmupRatio: 0,
      beta: 0.5,
      epsilon: 0.05,
      evalFraction: 0.25,
      saveEvery: 3,
      maxLength: 32,
    },
    quiet,
  )
  const state = await trainer.train()
  t.equal(state.step, 6)
  const lines = readMetrics(out)
  const train = lines.filter((l) => 'loss' in l)
  const evals = lines.filter((l) => 'eval_loss' in l)
  t.equal(train.length, 6)
  for (const key of SPEC_METRICS)
    t.ok(
      train.every((l) => Number.isFinite(l[key])),
      `${key} logged and finite`,
    )
  t.ok(evals.length >= 1 && Object.keys(evals[0]!).some((k) => k === 'eval_rewards/accuracies'))
  // Spec §6: β_{k+1} = β_k / (1 + ε·s̄_k), with kl/beta the β a step used.
  t.equal(train[0]!['kl/beta'], 0.5)
  for (let k = 1; k < train.length; k++) {
    const want = train[k - 1]!['kl/beta']! / (1 + 0.05 * train[k - 1]!['kl/avg_steps']!)
    t.ok(Math.abs(train[k]!['kl/beta']! - want) < 1e-15, `β at step ${k + 1}`)
  }
  t.ok(
    train.some((l) => l['kl/avg_steps'] !== 0),
    'the perturbation moved β',
  )
  t.ok(Math.abs(state.method.beta - train[5]!['kl/beta']! / (1 + 0.05 * train[5]!['kl/avg_steps']!)) < 1e-15)
  // Learnable toy set: the loss falls and the chosen answer wins.
  t.ok(train[5]!.loss! < train[0]!.loss!, `loss ${train[0]!.loss} → ${train[5]!.loss}`)
  t.ok(train[5]!['rewards/accuracies']! > 0.5)
  // Checkpoints at 3 and 6 reload as models, with tokenizer files beside them.
  const ckpt = path.join(out, 'checkpoint-6')
  t.same(
    fs
      .readdirSync(out)
      .filter((n) => n.startsWith('checkpoint-'))
      .sort(),
    ['checkpoint-3', 'checkpoint-6'],
  )
  t.ok(fs.existsSync(path.join(ckpt, 'tokenizer.json')) && fs.existsSync(path.join(ckpt, 'optimizer.safetensors')))
  const state6 = JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8'))
  t.equal(state6.step, 6)
  t.equal(state6.beta, state.method.beta)
  const reloaded = await CausalLM.fromPretrained(ckpt)
  const trained = trainer.policy.namedParameters().get('model.norm.weight')!.toArray() as Float32Array
  t.same(Array.from(reloaded.namedParameters().get('model.norm.weight')!.toArray() as Float32Array), Array.from(trained))
})

t.test('epsilon 0 is exactly DPO', async (t) => {
  const { model, work, data } = base(t)
  const run = async (name: string, extra: Record<string, unknown>) => {
    const out = path.join(work, name)
    await (await Trainer.create({ model, data: [data], out, batchSize: 4, maxSteps: 3, learningRate: 1e-3, maxLength: 32, ...extra }, quiet)).train()
    return { metrics: readMetrics(out), weights: weights(path.join(out, 'checkpoint-3')) }
  }
  const a = await run('eps0', { method: 'epsilon-dpo', epsilon: 0 })
  const b = await run('dpo', { method: 'dpo' })
  t.same(a.weights, b.weights)
  t.same(
    a.metrics.map((m) => ({ ...m, tokens_per_second: 0, step_time: 0 })),
    b.metrics.map((m) => ({ ...m, tokens_per_second: 0, step_time: 0 })),
  )
  t.ok(a.metrics.every((m) => m['kl/beta'] === 0.1 && m['kl/p_epsilon_steps'] === 0))
})

t.test('an option of another method is an error, not silently unused', async (t) => {
  const { model, work, data } = base(t)
  const out = path.join(work, 'unused')
  await t.rejects(
    Trainer.create({ model, data: [data], out, method: 'dpo', epsilon: 0.3 }, quiet),
    /--epsilon applies only to --method epsilon-dpo; this run's method is dpo/,
  )
  await t.rejects(
    Trainer.create({ model, data: [data], out, trDpoTau: 4, betaDpoRho: 0.1 }, quiet),
    /--beta-dpo-rho applies only to --method beta-dpo; --tr-dpo-tau applies only to --method tr-dpo; this run's method is epsilon-dpo: remove them/,
  )
  t.notOk(fs.existsSync(out), 'nothing is written before the error')
})

t.test('resume after an interruption ends with the same weights, β and metrics', async (t) => {
  const { model, work, data } = base(t)
  const config = {
    model,
    data: [data],
    batchSize: 4,
    gradAccumulation: 2,
    maxSteps: 6,
    learningRate: 2e-3,
    epsilon: 0.05,
    beta: 0.5,
    saveEvery: 2,
    maxLength: 32,
    warmupRatio: 0.2,
  }
  const full = path.join(work, 'full')
  const whole = await (await Trainer.create({ ...config, out: full }, quiet)).train()

  const cut = path.join(work, 'cut')
  const first = await Trainer.create({ ...config, out: cut }, quiet)
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 3) abort.abort() // "Ctrl-C" after step 3: a checkpoint of step 3 is written
  })
  await first.train({ signal: abort.signal })
  t.same(
    fs
      .readdirSync(cut)
      .filter((n) => n.startsWith('checkpoint-'))
      .sort(),
    ['checkpoint-2', 'checkpoint-3'],
  )
  const resumed = await (await Trainer.create({}, { ...quiet, resume: cut })).train()

  t.equal(resumed.step, 6)
  t.equal(resumed.method.beta, whole.method.beta)
  t.same(weights(path.join(cut, 'checkpoint-6')), weights(path.join(full, 'checkpoint-6')))
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip))
})

t.test('TR-DPO hard sync copies the policy into the reference every τ steps', async (t) => {
  const { model, work, data } = base(t)
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out: path.join(work, 'tr'),
      method: 'tr-dpo',
      trDpoMode: 'hard',
      trDpoTau: 2,
      batchSize: 4,
      maxSteps: 2,
      learningRate: 1e-3,
      warmupRatio: 0,
      maxLength: 32,
    },
    quiet,
  )
  let afterFirst: number[] = []
  let policyAfterFirst: number[] = []
  trainer.on('step', (s) => {
    if (s.step === 1) {
      afterFirst = Array.from(trainer.reference!.namedParameters().get('model.norm.weight')!.toArray() as Float32Array)
      policyAfterFirst = Array.from(trainer.policy.namedParameters().get('model.norm.weight')!.toArray() as Float32Array)
    }
  })
  await trainer.train()
  t.notSame(afterFirst, policyAfterFirst, 'step 1: reference still the original')
  const ref = trainer.reference!.namedParameters()
  for (const [name, p] of trainer.policy.namedParameters())
    t.same(Array.from(ref.get(name)!.toArray() as Float32Array), Array.from(p.toArray() as Float32Array), `step 2: ${name} synced`)
  t.ok(fs.existsSync(path.join(work, 'tr', 'checkpoint-2', 'reference', 'model.safetensors')), 'the moving reference is checkpointed')
})

t.test('a non-finite loss stops with the step and the last checkpoint', async (t) => {
  const { model, work, data } = base(t)
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out: path.join(work, 'nan'),
      batchSize: 4,
      maxSteps: 4,
      learningRate: 1e30,
      warmupRatio: 0,
      maxGradNorm: 0,
      saveEvery: 1,
      maxLength: 32,
    },
    quiet,
  )
  await t.rejects(trainer.train(), EdpoTrainingError)
  await t.rejects(
    (
      await Trainer.create(
        {
          model,
          data: [data],
          out: path.join(work, 'nan2'),
          batchSize: 4,
          maxSteps: 4,
          learningRate: 1e30,
          warmupRatio: 0,
          maxGradNorm: 0,
          saveEvery: 1,
          maxLength: 32,
        },
        quiet,
      )
    ).train(),
    /step \d: (the loss is not finite|the gradient norm is (NaN|Infinity)); stopped\. Last checkpoint: .*checkpoint-1/,
  )
})

t.test('TR-DPO soft sync mixes the policy into the reference: ref ← α·θ + (1−α)·ref', async (t) => {
  const { model, work, data } = base(t)
  const trainer = await Trainer.create(
    {
      model,
      data: [data],
      out: path.join(work, 'soft'),
      method: 'tr-dpo',
      trDpoMode: 'soft',
      trDpoAlpha: 0.25,
      trDpoTau: 1,
      batchSize: 4,
      maxSteps: 1,
      learningRate: 1e-3,
      warmupRatio: 0,
      maxLength: 32,
      dtype: 'float64',
    },
    quiet,
  )
  const before = new Map([...trainer.reference!.namedParameters()].map(([n, p]) => [n, Float64Array.from(p.toArray() as Float64Array)]))
  await trainer.train()
  const policy = trainer.policy.namedParameters()
  for (const [name, ref] of trainer.reference!.namedParameters()) {
    const theta = policy.get(name)!.toArray() as Float64Array
    const want = Array.from(before.get(name)!, (r, i) => 0.25 * theta[i]! + 0.75 * r)
    const cmp = close(ref.toArray() as Float64Array, want, 1e-14, 1e-15)
    t.ok(cmp.ok, `${name}: ${describe(cmp)}`)
  }
})
