// β-DPO (docs/beta-dpo.md) against a float64 reference written from the formulas: the momentum
// statistics, the kept count, the batch β, the sampling law of the filter, the loss and its
// gradient w.r.t. the sequence sums; then a tiny training run, its metrics, label noise and an
// exact resume of the calibrator's state.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { Tensor } from '../lib/index'
import { noisyPairIndices } from '../lib/train/methods/label-noise'
import { readMetrics } from '../lib/train/metrics-log'
import { BetaDpoCalibrator, betaDpoLoss, sampleWithoutReplacement } from '../lib/train/methods/beta-dpo'
import { Trainer } from '../lib/train/engine'
import { rng } from './helpers/reference'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const quiet = { log: () => {} }
const options = { beta0: 0.1, alpha: 0.6, rho: 0.2, momentum: 0.9 }

t.test('calibration follows the formulas batch after batch (float64 reference)', (t) => {
  const next = rng(3)
  const cal = new BetaDpoCalibrator(options, 42)
  let m0 = 0
  let sigma = 0
  for (let batch = 0; batch < 6; batch++) {
    const B = 4 + batch * 3
    const margins = Array.from({ length: B }, () => 10 * (next() - 0.3))
    const mean = margins.reduce((a, b) => a + b, 0) / B
    const std = Math.sqrt(margins.reduce((a, x) => a + (x - mean) ** 2, 0) / (B - 1))
    m0 = 0.9 * m0 + 0.1 * mean
    sigma = 0.9 * sigma + 0.1 * std
    const got = cal.calibrate(margins, true)
    t.ok(Math.abs(got.m0 - m0) <= 1e-12 * (1 + Math.abs(m0)), `M0 ${got.m0} vs ${m0}`)
    t.ok(Math.abs(got.sigma - sigma) <= 1e-12 * (1 + sigma), `σ ${got.sigma} vs ${sigma}`)
    t.equal(got.kept.length, Math.floor(B * 0.8), 'keeps ⌊B·(1−ρ)⌋ pairs')
    t.equal(new Set(got.kept).size, got.kept.length, 'without replacement')
    const keptMean = got.kept.reduce((a, i) => a + margins[i]!, 0) / got.kept.length
    const beta = Math.max(1e-3, 0.1 * (1 + 0.6 * (keptMean - m0)))
    t.ok(Math.abs(got.beta - beta) <= 1e-12, `β ${got.beta} vs ${beta}`)
  }
  // Evaluation changes nothing and keeps every pair.
  const before = cal.state
  const ev = cal.calibrate([1, 2, 3], false)
  t.same(cal.state, before)
  t.same(ev.kept, [0, 1, 2])
  t.end()
})

t.test('the filter draws with probability ∝ exp(−(M − M0)²/(2σ²))', (t) => {
  const weights = [0.05, 1, 0.5, 0.25, 0]
  const total = weights.reduce((a, b) => a + b, 0)
  const next = rng(9)
  const draws = 40_000
  const count = new Array<number>(weights.length).fill(0)
  for (let k = 0; k < draws; k++) count[sampleWithoutReplacement(weights, 1, next)[0]!]! += 1
  weights.forEach((w, i) => {
    const p = w / total
    const tol = 5 * Math.sqrt((p * (1 - p)) / draws) + 1e-9
    t.ok(Math.abs(count[i]! / draws - p) <= tol, `pair ${i}: ${count[i]! / draws} vs ${p.toFixed(4)}`)
  })
  // Two of three without replacement: a zero-weight pair is only drawn once the others are gone.
  t.same(sampleWithoutReplacement([1, 0, 1], 2, next), [0, 2])
  t.same(sampleWithoutReplacement([1, 0, 1], 3, next), [0, 1, 2])
  t.end()
})

t.test('loss and gradient: mean of −log σ(β·z) over the kept pairs only', async (t) => {
  const B = 6
  const next = rng(5)
  const policy = Float64Array.from({ length: 2 * B }, () => -20 * next())
  const reference = Float64Array.from({ length: 2 * B }, () => -20 * next())
  const leaf = Tensor.from(policy, [2 * B], { dtype: 'float64', requiresGrad: true })
  const cal = new BetaDpoCalibrator({ ...options, rho: 0.5 }, 1)
  const out = betaDpoLoss(leaf, { policy, reference, tokens: new Float64Array(2 * B) }, cal, true, 0, 'cpu')
  const { beta, kept } = out.calibration
  const z = Array.from({ length: B }, (_, i) => policy[i]! - policy[B + i]! - (reference[i]! - reference[B + i]!))
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
  const want = kept.reduce((a, i) => a - Math.log(sigmoid(beta * z[i]!)), 0) / kept.length
  t.ok(Math.abs(out.loss.item() - want) <= 1e-12 * Math.abs(want), `loss ${out.loss.item()} vs ${want}`)
  await out.loss.backwardAsync()
  const grad = leaf.grad!.toArray() as Float64Array
  for (let i = 0; i < B; i++) {
    const g = kept.includes(i) ? (-beta * sigmoid(-beta * z[i]!)) / kept.length : 0
    t.ok(Math.abs(grad[i]! - g) <= 1e-12 && Math.abs(grad[B + i]! + g) <= 1e-12, `dL/dS pair ${i}: ${grad[i]} vs ${g}`)
  }
  // The record's loss column averages to the trained loss; β and the rewards use the batch β.
  const rec = out.record.toArray() as Float64Array
  const k = out.record.shape[1]!
  t.ok(Math.abs(Array.from({ length: B }, (_, i) => rec[i * k + 8]!).reduce((a, b) => a + b, 0) / B - want) <= 1e-12)
  t.end()
})

t.test('training with beta-dpo: metrics, checkpointed state and an exact resume', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 64)
  const config = { model, data: [data], method: 'beta-dpo' as const, batchSize: 8, maxSteps: 4, learningRate: 2e-3, beta: 0.5, saveEvery: 2, maxLength: 32 }
  const full = path.join(work, 'full')
  await (await Trainer.create({ ...config, out: full }, quiet)).train()
  const metrics = readMetrics(full).filter((m) => 'loss' in m)
  t.equal(metrics.length, 4)
  for (const m of metrics) t.ok(Number.isFinite(m['beta_dpo/m0']) && m['beta_dpo/sigma']! >= 0, 'logs M0 and σ')
  // The policy starts as the reference: every margin and M0 are 0, so the first β is β0 exactly.
  t.equal(metrics[0]!['kl/beta'], 0.5)
  // (Step 1 runs at learning rate 0 in the warm-up, so step 2 starts from the reference too.)
  t.ok(
    metrics.slice(2).every((m) => m['kl/beta']! >= 1e-3 && m['kl/beta'] !== 0.5),
    `then β moves: ${metrics.map((m) => m['kl/beta']).join(', ')}`,
  )
  const state = JSON.parse(fs.readFileSync(path.join(full, 'checkpoint-4', 'trainer_state.json'), 'utf8')) as { betaDpo: { batches: number } }
  t.equal(state.betaDpo.batches, 4, 'one calibration per training micro-batch')

  const cut = path.join(work, 'cut')
  const first = await Trainer.create({ ...config, out: cut }, quiet)
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 2) abort.abort()
  })
  await first.train({ signal: abort.signal })
  await (await Trainer.create({}, { ...quiet, resume: cut })).train()
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip), 'same β, M0, σ and losses after the resume')
})

t.test('label noise flips round(p·N) seeded pairs, the same ones for every method', async (t) => {
  t.equal(noisyPairIndices(100, 0.2, 1).length, 20)
  t.same(noisyPairIndices(100, 0.2, 1), noisyPairIndices(100, 0.2, 1))
  t.not(JSON.stringify(noisyPairIndices(100, 0.2, 1)), JSON.stringify(noisyPairIndices(100, 0.2, 2)))
  t.same(noisyPairIndices(10, 1, 3), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 40)
  const lines: string[] = []
  const trainer = await Trainer.create(
    { model, data: [data], out: path.join(work, 'noisy'), labelNoise: 0.25, maxSteps: 1, batchSize: 8, maxLength: 32 },
    { log: (l) => lines.push(l) },
  )
  const flipped = new Set(noisyPairIndices(40, 0.25, 42))
  const clean = await Trainer.create({ model, data: [data], out: path.join(work, 'clean'), maxSteps: 1, batchSize: 8, maxLength: 32 }, quiet)
  trainer.data.train.forEach((p, i) => {
    const q = clean.data.train[i]!
    if (flipped.has(i)) t.same([p.chosen, p.rejected], [q.rejected, q.chosen])
    else t.same([p.chosen, p.rejected], [q.chosen, q.rejected])
  })
  t.ok(
    lines.some((l) => /swapped in 10 of 40/.test(l)),
    'says how many pairs were flipped',
  )
  await t.rejects(
    Trainer.create({ model, data: [data], out: path.join(work, 'x'), method: 'dpo', criterionPrecision: 'bf16' }, quiet),
    /--criterion-precision applies only to --method epsilon-dpo/,
  )
})
