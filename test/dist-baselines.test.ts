// The paper's comparison set on 2 ranks trains like 1 process (issue #26's paper-scale runs use
// 16 GPUs): 2 ranks × batch 4 against 1 process × batch 8, for IPO, SimPO, CPO, ORPO, R-DPO,
// SLiC-HF, RRHF and KTO. Their losses are means over pairs, which the ranks' loss weights
// recombine, except KTO's: its reference point z₀ is a statistic of the micro-batch (the mean KL of
// each prompt with its neighbour's completions), which every rank must take over the global
// micro-batch, its KL rows paired across the rank boundary, with one all-reduce. KTO also runs at
// ZeRO-3, where its KL forwards gather like any other (a rank with one pair, or a stand-in, runs
// them too) and with accumulation 2. The bounds are test/dist-equivalence.test.ts's (losses and
// z₀ 5e-5 relative, weights 1e-5 after 3 AdamW steps with ε = 1e-6).
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { equivalenceRun, startRankPair, weightDifference } from './helpers/dist-run'

type T = { ok(v: boolean, m: string): void; equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void }

/** Worst relative difference of `key` between two runs' logged entries (both must log as many). */
function worst(t: T, label: string, a: string, b: string, key: string): number {
  const va = readMetrics(a).flatMap((m) => (typeof m[key] === 'number' ? [m[key] as number] : []))
  const vb = readMetrics(b).flatMap((m) => (typeof m[key] === 'number' ? [m[key] as number] : []))
  t.equal(va.length, vb.length, `${label}: as many ${key} entries`)
  return Math.max(0, ...va.map((v, i) => Math.abs(v - vb[i]!) / Math.max(Math.abs(v), 1e-12)))
}

t.test('the baseline methods on 2 ranks equal 1 process; KTO takes z₀ over the global micro-batch', async (t) => {
  // The third global micro-batch of 8 holds one pair (KTO: z₀ = 0 there, on every rank; rank 1
  // has no rows, and for KTO and the NLL methods runs a stand-in row to join the all-reduce).
  const { work, base, referenceModel } = equivalenceRun(t)
  const withReference = new Set(['ipo', 'r-dpo', 'kto'])
  const cases: { label: string; config: Record<string, unknown>; ranks?: Record<string, unknown> }[] = [
    'ipo',
    'simpo',
    'cpo',
    'orpo',
    'r-dpo',
    'slic-hf',
    'rrhf',
    'kto',
  ].map((method) => ({ label: method, config: { ...base, method, ...(withReference.has(method) ? { referenceModel } : {}) } }))
  cases.push({ label: 'kto accumulation 2', config: { ...base, method: 'kto', referenceModel, gradAccumulation: 2 } })
  cases.push({ label: 'kto zero-3', config: { ...base, method: 'kto', referenceModel }, ranks: { zeroStage: 3 } })
  const out = (label: string, what: string) => path.join(work, `${label.replace(/ /g, '-')}-${what}`)
  const pair = startRankPair(
    work,
    cases.map((c) => ({ kind: 'train', config: { ...c.config, ...c.ranks, batchSize: 4, out: out(c.label, 'ranks') } })),
    900_000,
  )
  for (const c of cases) await (await Trainer.create({ ...c.config, batchSize: 8, out: out(c.label, 'one') } as never, { log: () => {} })).train()
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)
  for (const c of cases) {
    const [a, b] = [out(c.label, 'one'), out(c.label, 'ranks')]
    for (const key of ['loss', 'eval_loss', ...(c.label.startsWith('kto') ? ['kl', 'eval_kl'] : [])]) {
      const rel = worst(t, c.label, a, b, key)
      t.ok(rel <= 5e-5, `${c.label}: ${key} agrees (max relative difference ${rel.toExponential(2)} ≤ 5e-5)`)
    }
    const weight = weightDifference(t, c.label, a, b)
    t.ok(weight <= 1e-5, `${c.label}: final weights agree (max |Δw| ${weight.toExponential(2)} ≤ 1e-5)`)
  }
  // z₀ must be away from its clamp at 0 for the KTO cases to say anything.
  const z0 = readMetrics(out('kto', 'one')).flatMap((m) => (typeof m.kl === 'number' ? [m.kl] : []))
  t.ok(Math.max(...z0) > 1e-3, `KTO's z₀ is positive in some step: ${z0.map((v) => v.toFixed(4)).join(', ')}`)
})
