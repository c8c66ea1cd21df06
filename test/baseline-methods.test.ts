// The baseline methods (--method ipo|simpo|cpo|orpo|r-dpo|slic-hf|hinge|rrhf|kto) through the
// Trainer on the tiny model: metrics in TRL's names, an exact resume from a checkpoint, no
// reference weights for the reference-free ones (memory report), --padding-free, and errors for
// options the method never reads.
import * as path from 'node:path'

import t from 'tap'

import { trainConfigSchema } from '../lib/train/config'
import { METHODS } from '../lib/train/methods'
import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const quiet = { log: () => {} }
const BASELINES = ['ipo', 'simpo', 'cpo', 'orpo', 'r-dpo', 'slic-hf', 'hinge', 'rrhf', 'kto'] as const
const EXTRA: Record<string, string[]> = {
  cpo: ['nll_loss'],
  orpo: ['nll_loss', 'log_odds_ratio', 'log_odds_chosen'],
  'slic-hf': ['nll_loss'],
  hinge: ['nll_loss'],
  rrhf: ['nll_loss'],
  kto: ['kl'],
}
const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })

for (const method of BASELINES) {
  t.test(`${method}: trains, logs TRL's metrics and resumes bit-exact`, async (t) => {
    const model = makeTrainableModel(t)
    const work = tempDir(t)
    const config = { model, data: [writeToyPreferences(work, 24)], method, batchSize: 3, maxSteps: 4, learningRate: 2e-3, saveEvery: 2, maxLength: 32 }
    const full = path.join(work, 'full')
    await (await Trainer.create({ ...config, out: full }, quiet)).train()
    const metrics = readMetrics(full).filter((m) => 'loss' in m)
    t.equal(metrics.length, 4)
    for (const key of [
      'loss',
      'rewards/chosen',
      'rewards/rejected',
      'rewards/accuracies',
      'rewards/margins',
      'logps/chosen',
      'logps/rejected',
      ...(EXTRA[method] ?? []),
    ])
      t.ok(
        metrics.every((m) => Number.isFinite(m[key])),
        `${key} logged`,
      )
    t.ok(
      metrics.some((m) => m.loss !== metrics[0]!.loss),
      `the loss moves: ${metrics.map((m) => m.loss).join(', ')}`,
    )

    const cut = path.join(work, 'cut')
    const first = await Trainer.create({ ...config, out: cut }, quiet)
    const abort = new AbortController()
    first.on('step', (s) => {
      if (s.step === 2) abort.abort()
    })
    await first.train({ signal: abort.signal })
    await (await Trainer.create({}, { ...quiet, resume: cut })).train()
    t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip), 'the same metrics after the resume')
  })
}

t.test('the reference-free methods hold no reference weights; the others do', async (t) => {
  const previous = process.env.EDPO_MEMORY_REPORT
  process.env.EDPO_MEMORY_REPORT = '1'
  t.teardown(() => {
    if (previous === undefined) delete process.env.EDPO_MEMORY_REPORT
    else process.env.EDPO_MEMORY_REPORT = previous
  })
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = [writeToyPreferences(work, 6)]
  for (const method of BASELINES) {
    const out = path.join(work, method)
    await (await Trainer.create({ model, data, out, method, batchSize: 3, maxSteps: 1, maxLength: 32 }, quiet)).train()
    const m = readMetrics(out).find((r) => 'memory/reference_weights_bytes' in r)!
    const free = METHODS[method].reference === 'none'
    t.equal(free, ['simpo', 'cpo', 'orpo', 'slic-hf', 'hinge', 'rrhf'].includes(method), `${method}: reference-free per the registry`)
    if (free) t.equal(m['memory/reference_weights_bytes'], 0, `${method}: no reference weights`)
    else t.ok(m['memory/reference_weights_bytes']! > 0, `${method}: a reference`)
  }
})

t.test('--padding-free gives the padded run’s losses', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = [writeToyPreferences(work, 12)]
  for (const method of ['simpo', 'kto'] as const) {
    const run = async (paddingFree: boolean) => {
      const out = path.join(work, `${method}-${paddingFree}`)
      await (await Trainer.create({ model, data, out, method, batchSize: 3, maxSteps: 2, learningRate: 2e-3, maxLength: 32, paddingFree }, quiet)).train()
      return readMetrics(out)
        .filter((m) => 'loss' in m)
        .map((m) => m.loss!)
    }
    const padded = await run(false)
    const packed = await run(true)
    // fp32 tiny model: the packed attention sums in another order.
    t.ok(
      packed.every((l, i) => Math.abs(l - padded[i]!) <= 1e-5 * Math.max(1, Math.abs(padded[i]!))),
      `${method}: ${packed.join(', ')} vs ${padded.join(', ')}`,
    )
  }
})

t.test('options the method never reads, and KTO with one pair per micro-batch, are errors', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const base = { model, data: [writeToyPreferences(work, 6)], out: path.join(work, 'bad'), maxLength: 32 }
  await t.rejects(Trainer.create({ ...base, method: 'cpo', simpoGamma: 1 }, quiet), /--simpo-gamma applies only to --method simpo/)
  await t.rejects(
    Trainer.create({ ...base, method: 'simpo', referenceModel: model }, quiet),
    /--reference-model applies only to .*; this run's method is simpo/,
  )
  await t.rejects(Trainer.create({ ...base, method: 'orpo', epsilon: 0.1 }, quiet), /--epsilon applies only to --method epsilon-dpo/)
  await t.rejects(Trainer.create({ ...base, method: 'kto', batchSize: 1 }, quiet), /--method kto: --batch-size must be at least 2/)
  // RRHF has no β, so --beta is an error there, not a silently unused flag.
  await t.rejects(Trainer.create({ ...base, method: 'rrhf', beta: 0.2 }, quiet), /--beta applies only to --method .*; this run's method is rrhf/)
})

t.test("each method's own β default: SimPO's paper setting, TRL's 0.1 elsewhere, none for RRHF", (t) => {
  const base = { model: 'm', data: ['d'], out: 'o' }
  t.equal(trainConfigSchema.parse({ ...base, method: 'simpo' }).beta, 2)
  for (const method of ['epsilon-dpo', 'dpo', 'ipo', 'cpo', 'orpo', 'r-dpo', 'slic-hf', 'kto'] as const)
    t.equal(trainConfigSchema.parse({ ...base, method }).beta, 0.1, method)
  t.notOk('beta' in trainConfigSchema.parse({ ...base, method: 'rrhf' }), 'no β in an RRHF config')
  t.same(METHODS.rrhf.state, {}, 'nor in its trainer_state.json')
  t.end()
})
