// ZeRO-3 (issue #25): 2 ranks with sharded parameters train like 1 process and like ZeRO-0 on 2
// ranks. Stage 3 changes where each sum is taken, not what is summed:
//   - a unit's gradient is reduce-scattered in every micro-batch's backward (each chunk onto its
//     rank: 2 fp32 terms, one rounding, as ZeRO-0's all-reduce), and with accumulation 2 the
//     shards sum (a1 + b1)/2 + (a2 + b2)/2 instead of ((a1 + a2) + (b1 + b2))/2: fp32 reordering,
//     ~1e-7 relative per gradient element;
//   - the gradient norm's Σ g² is taken per shard, then across ranks;
// so the bounds are those of test/dist-equivalence.test.ts (losses 5e-5 relative, weights 1e-5
// after 3 AdamW steps with ε = 1e-6: 3 · lr · δg / ε with δg ≲ 1e-9). The weights compared are
// the checkpoint's, which stage 3 writes gathered one unit per file.
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { SftTrainer } from '../lib/train/sft-trainer'
import { Trainer } from '../lib/train/trainer'
import { tempDir } from './helpers/data-fixtures'
import { RUN_SETTINGS, startRankPair, weightDifference } from './helpers/dist-run'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

type T = { ok(v: boolean, m: string): void; equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void }

/** The worst loss (relative) and weight differences of two runs, asserted against the bounds above. */
function compareRuns(t: T, label: string, a: string, b: string): { loss: number; weight: number } {
  const ma = readMetrics(a).filter((m) => m.loss !== undefined)
  const mb = readMetrics(b).filter((m) => m.loss !== undefined)
  t.equal(ma.length, mb.length, `${label}: same number of logged steps`)
  let loss = 0
  for (let i = 0; i < ma.length; i++) loss = Math.max(loss, Math.abs(ma[i]!.loss! - mb[i]!.loss!) / Math.abs(ma[i]!.loss!))
  for (const key of ['kl/beta', 'eval_loss'] as const) {
    const va = readMetrics(a).flatMap((m) => m[key] ?? [])
    const vb = readMetrics(b).flatMap((m) => m[key] ?? [])
    t.equal(va.length, vb.length, `${label}: as many ${key} entries`)
    const rel = Math.max(0, ...va.map((v, i) => Math.abs(v - vb[i]!) / Math.abs(v)))
    t.ok(rel <= 5e-5, `${label}: ${key} agrees (max relative difference ${rel.toExponential(2)})`)
  }
  t.ok(loss <= 5e-5, `${label}: losses agree (max relative difference ${loss.toExponential(2)} ≤ 5e-5)`)
  const weight = weightDifference(t, label, a, b)
  t.ok(weight <= 1e-5, `${label}: final weights agree (max |Δw| ${weight.toExponential(2)} ≤ 1e-5)`)
  return { loss, weight }
}

t.test('ZeRO-3 on 2 ranks equals 1 process and ZeRO-0', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  // 17 rows: the third global micro-batch of 8 holds one row, so rank 1 runs a stand-in row
  // weighted 0 there (its gathers are collectives); 7 eval rows split 4 / 3.
  const data = writeToyPreferences(work, 17)
  const evalData = writeToyPreferences(work, 7, 'eval.jsonl')
  const base = { model, data: [data], evalData: [evalData], ...RUN_SETTINGS }
  const pref = { ...base, referenceModel, beta: 0.5 }
  const cases: { label: string; kind: 'train' | 'sft'; config: Record<string, unknown> }[] = [
    { label: 'epsilon-dpo', kind: 'train', config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1 } },
    {
      label: 'epsilon-dpo checkpointing accumulation 2',
      kind: 'train',
      config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1, gradientCheckpointing: true, gradAccumulation: 2 },
    },
    {
      label: 'epsilon-dpo whole reference accumulation 2',
      kind: 'train',
      config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1, gradAccumulation: 2, shardReference: false },
    },
    { label: 'dpo checkpointing', kind: 'train', config: { ...pref, method: 'dpo', gradientCheckpointing: true } },
    { label: 'sft accumulation 2', kind: 'sft', config: { ...base, gradAccumulation: 2 } },
    { label: 'sft checkpointing', kind: 'sft', config: { ...base, gradientCheckpointing: true } },
  ]
  const out = (label: string, what: string) => path.join(work, `${label.replace(/ /g, '-')}-${what}`)
  const jobs = cases.map((c) => ({ kind: c.kind, config: { ...c.config, batchSize: 4, zeroStage: 3, out: out(c.label, 'zero3') } }))
  const zero0 = cases[1]!
  jobs.push({ kind: 'train', config: { ...zero0.config, batchSize: 4, out: out(zero0.label, 'zero0') } })
  const pair = startRankPair(work, jobs, 900_000)
  for (const c of cases) {
    const config = { ...c.config, batchSize: 8, out: out(c.label, 'one') }
    const trainer = c.kind === 'sft' ? await SftTrainer.create(config as never, { log: () => {} }) : await Trainer.create(config as never, { log: () => {} })
    await trainer.train()
  }
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)
  for (const c of cases) {
    const d = compareRuns(t, `ZeRO-3 vs 1 process (${c.label})`, out(c.label, 'one'), out(c.label, 'zero3'))
    t.comment(`${c.label}: worst loss ${d.loss.toExponential(2)}, worst |Δw| ${d.weight.toExponential(2)}`)
  }
  compareRuns(t, `ZeRO-3 vs ZeRO-0 (${zero0.label})`, out(zero0.label, 'zero0'), out(zero0.label, 'zero3'))
})
