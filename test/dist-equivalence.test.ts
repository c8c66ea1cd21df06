// 2 ranks × batch 4 train like 1 process × batch 8 (issue #12): the same examples per optimizer
// step (one global order, sharded by rank), each rank's loss weighted by its share, gradients
// averaged over ranks, β's statistics gathered from every rank. Checked for ε-DPO, DPO, TR-DPO
// and SFT, with and without grad accumulation 2, and ZeRO-1/2 against ZeRO-0, on fp32 models:
//   - β: each step's s_i are discrete decisions computed the same way from the same rows, so the
//     β trajectory is equal up to the fp64 division's rounding (relative 1e-12);
//   - losses: a rank evaluates its 4 pairs with shorter padding (other matmul shapes) and the
//     mean is taken in two stages (per rank, then across ranks): fp32 sums of at most a few
//     hundred terms, ~n·6e-8 ≈ 2e-5 relative, so the bound is 5e-5 relative;
//   - weights: after 3 AdamW steps of lr 1e-3, |Δw| ≤ 1e-5. AdamW divides by √v + ε; with
//     ε = 1e-6 a gradient difference δg moves a weight by at most lr·|δg|/ε per step, and fp32
//     gradient differences here are ≲ 1e-9 (the fixture's gradients are ≲ 1e-1, relative 1e-8):
//     3 · 1e-3 · 1e-9 / 1e-6 = 3e-6, bounded by 1e-5.
// ZeRO-1/2 change only who updates which parameter (and the order of the gradient norm's sum),
// so they must equal ZeRO-0 at the same bounds. LoRA (ε-DPO against the base with adapters off,
// and SFT) trains only the adapters, whose gradients are averaged like any other: the same bounds
// apply to the adapter weights (adapter_model.safetensors). Its dropout is 0 here: each rank draws
// its own masks, so with dropout two ranks are a different (equally valid) sample of 1 process.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { equivalenceRun, lastCheckpoint, startRankPair, weightDifference } from './helpers/dist-run'

interface Job {
  kind: 'train' | 'sft'
  config: Record<string, unknown>
}

function compareRuns(
  t: { ok(v: boolean, m: string): void; equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void },
  label: string,
  a: string,
  b: string,
): void {
  const ma = readMetrics(a).filter((m) => m.loss !== undefined)
  const mb = readMetrics(b).filter((m) => m.loss !== undefined)
  t.equal(ma.length, mb.length, `${label}: same number of logged steps`)
  let lossRel = 0
  let betaRel = 0
  for (let i = 0; i < ma.length; i++) {
    lossRel = Math.max(lossRel, Math.abs(ma[i]!.loss! - mb[i]!.loss!) / Math.abs(ma[i]!.loss!))
    if (ma[i]!['kl/beta'] !== undefined) betaRel = Math.max(betaRel, Math.abs(ma[i]!['kl/beta']! - mb[i]!['kl/beta']!) / ma[i]!['kl/beta']!)
  }
  t.ok(lossRel <= 5e-5, `${label}: losses agree (max relative difference ${lossRel.toExponential(2)} ≤ 5e-5)`)
  const evalA = readMetrics(a).filter((m) => m.eval_loss !== undefined)
  const evalB = readMetrics(b).filter((m) => m.eval_loss !== undefined)
  t.equal(evalA.length, 1, `${label}: one evaluation`)
  const evalRel = Math.abs(evalA[0]!.eval_loss! - evalB[0]!.eval_loss!) / Math.abs(evalA[0]!.eval_loss!)
  t.ok(evalRel <= 5e-5, `${label}: eval loss (rows sharded 4 / 3) agrees (relative difference ${evalRel.toExponential(2)})`)
  if (ma.some((m) => m['kl/beta'] !== undefined)) t.ok(betaRel <= 1e-12, `${label}: β trajectory agrees (max relative difference ${betaRel.toExponential(2)})`)
  const maxDiff = weightDifference(t, label, a, b)
  t.ok(maxDiff <= 1e-5, `${label}: final weights agree (max |Δw| ${maxDiff.toExponential(2)} ≤ 1e-5)`)
}

t.test('2 ranks × batch 4 equal 1 process × batch 8; ZeRO-1/2 equal ZeRO-0', async (t) => {
  // The third global micro-batch of 8 holds one row, so rank 1 has none there (its gradient
  // counts as zero, its stats as absent).
  const { work, base, referenceModel } = equivalenceRun(t)
  const pref = { ...base, referenceModel, beta: 0.5 }
  // Each method takes only its own options (the Trainer rejects the others').
  const own: Record<string, Record<string, unknown>> = { 'epsilon-dpo': { epsilon: 0.1 }, dpo: {}, 'tr-dpo': { trDpoTau: 1 } }
  const lora = { loraR: 4, loraAlpha: 8, loraDropout: 0 }
  const cases: { label: string; kind: 'train' | 'sft'; config: Record<string, unknown> }[] = []
  for (const accum of [1, 2]) {
    for (const method of ['epsilon-dpo', 'dpo', 'tr-dpo'])
      cases.push({ label: `${method} accumulation ${accum}`, kind: 'train', config: { ...pref, ...own[method], method, gradAccumulation: accum } })
    cases.push({ label: `sft accumulation ${accum}`, kind: 'sft', config: { ...base, gradAccumulation: accum } })
    // LoRA's reference is the base with the adapters off: no referenceModel.
    cases.push({
      label: `epsilon-dpo LoRA accumulation ${accum}`,
      kind: 'train',
      config: { ...base, beta: 0.5, ...own['epsilon-dpo'], ...lora, method: 'epsilon-dpo', gradAccumulation: accum },
    })
  }
  cases.push({ label: 'sft LoRA accumulation 2', kind: 'sft', config: { ...base, ...lora, gradAccumulation: 2 } })
  const out = (label: string, what: string) => path.join(work, `${label.replace(/ /g, '-')}-${what}`)
  const jobs: Job[] = cases.map((c) => ({ kind: c.kind, config: { ...c.config, batchSize: 4, out: out(c.label, 'ranks') } }))
  const zero = cases.find((c) => c.label === 'epsilon-dpo accumulation 2')!
  for (const stage of [1, 2]) jobs.push({ kind: 'train', config: { ...zero.config, batchSize: 4, zeroStage: stage, out: out(zero.label, `zero${stage}`) } })
  const zeroLora = cases.find((c) => c.label === 'epsilon-dpo LoRA accumulation 2')!
  jobs.push({ kind: 'train', config: { ...zeroLora.config, batchSize: 4, zeroStage: 2, out: out(zeroLora.label, 'zero2') } })

  // The two ranks run every job in one pair of processes, while this process runs the baselines.
  const pair = startRankPair(work, jobs, 900_000)

  for (const c of cases) {
    const config = { ...c.config, batchSize: 8, out: out(c.label, 'one') }
    const trainer = c.kind === 'sft' ? await SftTrainer.create(config as never, { log: () => {} }) : await Trainer.create(config as never, { log: () => {} })
    await trainer.train()
  }
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)

  for (const c of cases) compareRuns(t, c.label, out(c.label, 'one'), out(c.label, 'ranks'))
  for (const stage of [1, 2]) compareRuns(t, `ZeRO-${stage} vs ZeRO-0 (${zero.label})`, out(zero.label, 'ranks'), out(zero.label, `zero${stage}`))
  compareRuns(t, `ZeRO-2 vs ZeRO-0 (${zeroLora.label})`, out(zeroLora.label, 'ranks'), out(zeroLora.label, 'zero2'))
  // ZeRO shards: one optimizer file per rank, each with about half of the state.
  const ck = lastCheckpoint(out(zero.label, 'zero1'))
  const shardFiles = fs
    .readdirSync(ck)
    .filter((n) => n.startsWith('optimizer'))
    .sort()
  t.same(shardFiles, ['optimizer-rank0-of-2.safetensors', 'optimizer-rank1-of-2.safetensors'], 'ZeRO-1 writes one optimizer shard per rank')
  const full = fs.statSync(path.join(lastCheckpoint(out(zero.label, 'ranks')), 'optimizer.safetensors')).size
  for (const f of shardFiles) {
    const share = fs.statSync(path.join(ck, f)).size / full
    t.ok(share > 0.25 && share < 0.75, `${f} holds ${(share * 100).toFixed(0)}% of the optimizer state (≈ 1/world)`)
  }
})
