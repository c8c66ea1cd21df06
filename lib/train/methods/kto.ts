// KTO (losses/kto.ts) on paired data, as TRL's KTOTrainer treats a pair: one desirable and one
// undesirable example. Its reference point z₀ is the micro-batch's KL estimate from mismatched
// completions: pair i's prompt with pair (i+1 mod B)'s chosen and rejected completions, run
// through the policy and the reference without gradients (2B more rows, both forwards).
// On several ranks z₀ is the global micro-batch's, as TRL gathers it across processes: each rank
// runs the KL rows of its own pairs with their global neighbours, and one all-reduce of
// [Σ(S_KL − S_ref,KL), rows] gives every rank the same mean, so N ranks train as one process.
import { z } from 'zod'

import { collate, paddingLayout, type TokenizedPair } from '../../data'
import { EdpoInputError } from '../../core/errors'
import { sequenceStatsFromHiddenAsync } from '../../core/ops'
import { Tensor } from '../../core/tensor'
import type { DistGroup } from '../../distributed/group'
import type { OptionTable } from '../option-table'
import type { BaselineContext } from './baseline-base'
import { baselineMethod } from './baseline-specs'
import { type KtoKlSums, ktoLoss, type PairSums } from './losses'
import { BETA_OPTIONS, REFERENCE_OPTIONS } from './preference'

export const KTO_OPTIONS = {
  ...BETA_OPTIONS,
  ...REFERENCE_OPTIONS,
  desirableWeight: { schema: z.number().min(0).default(1), kind: 'number', help: 'kto: λ_D, the weight of the desirable (chosen) examples' },
  undesirableWeight: { schema: z.number().min(0).default(1), kind: 'number', help: 'kto: λ_U, the weight of the undesirable (rejected) examples' },
} satisfies OptionTable

/**
 * Each prompt with the next pair's completions, cut to fit maxLength as the pair's own rows were.
 * `global`: the rows are global[offset …] of a micro-batch split over ranks, whose neighbours they take.
 */
export function mismatchedPairs(
  rows: readonly TokenizedPair[],
  maxLength: number,
  global: { rows: readonly TokenizedPair[]; offset: number } = { rows, offset: 0 },
): TokenizedPair[] {
  return rows.map((p, i) => {
    const next = global.rows[(global.offset + i + 1) % global.rows.length]!
    const room = Math.max(1, maxLength - p.prompt.length)
    return { source: p.source, prompt: p.prompt, chosen: next.chosen.subarray(0, room), rejected: next.rejected.subarray(0, room) }
  })
}

/** The KL rows' sums of this rank's pairs; undefined for a (global) micro-batch of one pair (no other completion to pair its prompt with). */
async function klSums(ctx: BaselineContext): Promise<KtoKlSums | undefined> {
  const { method, rows } = ctx
  const share = ctx.batch.share
  const c = method.config
  // A stand-in row (a rank without rows) runs its KL rows too: at ZeRO-3 every forward is a collective.
  const global = share ? { rows: share.rows, offset: share.standIn ? 0 : share.counts.slice(0, share.rank).reduce((a, b) => a + b, 0) } : undefined
  if ((global?.rows ?? rows).length < 2) return undefined
  const reference = method.reference!
  const batch = collate(mismatchedPairs(rows, c.maxLength, global), method.data.tokenizer.padTokenId, { device: c.device })
  const layout = c.paddingFree ? { sequenceLengths: Array.from(batch.rowLengths) } : paddingLayout(batch)
  const policyHidden = await method.model.forwardHiddenAsync(batch.inputIds, { ...layout, grad: false })
  const referenceHidden = await reference.forwardHiddenAsync(batch.inputIds, { ...layout, grad: false })
  const ph = method.model.lmHead()
  const rh = reference.lmHead()
  const stats = await sequenceStatsFromHiddenAsync({
    policyHidden,
    policyHead: ph.weight,
    policyBias: ph.bias,
    referenceHidden,
    referenceHead: rh.weight,
    referenceBias: rh.bias,
    labels: batch.labels,
    lossMask: batch.lossMask,
    finalLogitSoftcap: ph.finalLogitSoftcap || undefined,
    chunkTokens: c.chunkTokens,
    activeRows: batch.activeRows,
  })
  const out = { policy: stats.logps.detach(), reference: stats.referenceLogps! }
  for (const t of [
    policyHidden,
    referenceHidden,
    batch.inputIds,
    batch.attentionMask,
    batch.labels,
    batch.lossMask,
    batch.activeRows,
    stats.logps,
    stats.correct,
    stats.tokenCount,
    stats.kl,
    stats.inputError,
    ph.weight,
    rh.weight,
  ])
    t?.dispose()
  return out
}

/**
 * The global micro-batch's KL rows as one row whose sums differ by their mean: one all-reduce of
 * [Σ(S_KL − S_ref,KL), rows] (a stand-in rank adds nothing), on the device, with no host read.
 */
async function globalKlMean(local: KtoKlSums, standIn: boolean, dist: DistGroup): Promise<KtoKlSums> {
  const n = standIn ? 0 : local.policy.shape[0]!
  const device = local.policy.device
  const packed = Tensor.tidy(() =>
    Tensor.cat([
      local.policy
        .sub(local.reference)
        .sum()
        .mul(n > 0 ? 1 : 0)
        .reshape([1]),
      Tensor.full([1], n, { dtype: 'float64', device }),
    ]),
  )
  await dist.allreduce([packed], { op: 'sum' })
  // No KL rows anywhere (every rank a stand-in cannot happen, but 0/0 must not): the sum is 0 then.
  const mean = Tensor.tidy(() => {
    const rows = packed.narrow(0, 1, 1)
    return packed.narrow(0, 0, 1).div(rows.maskedFill(rows.lt(1), 1))
  })
  for (const t of [packed, local.policy, local.reference]) t.dispose()
  return { policy: mean, reference: Tensor.zeros([1], { dtype: 'float64', device }) }
}

export const KTO = baselineMethod({
  title: 'KTO',
  about: 'KTO on pairs (one desirable, one undesirable example each) with the micro-batch KL estimate z₀ (TRL KTOTrainer)',
  reference: 'frozen',
  options: KTO_OPTIONS,
  make(c) {
    if (c.batchSize < 2)
      throw new EdpoInputError(
        `--method kto: --batch-size must be at least 2: its KL estimate pairs each prompt with another pair's completions (got ${c.batchSize})`,
      )
    const o = { desirableWeight: c.desirableWeight, undesirableWeight: c.undesirableWeight }
    return {
      async loss(sums: PairSums, beta: number, ctx: BaselineContext) {
        const local = await klSums(ctx)
        // One pair alone (a last partial micro-batch): z₀ = 0, written as equal KL sums.
        const zeros = () => Tensor.zeros([1], { dtype: 'float64', device: c.device })
        const share = ctx.batch.share
        const kl = !local ? { policy: zeros(), reference: zeros() } : !share || !ctx.dist ? local : await globalKlMean(local, share.standIn, ctx.dist)
        const out = Tensor.tidy(() => ktoLoss(sums, kl, { beta, ...o }))
        kl.policy.dispose()
        kl.reference.dispose()
        return out
      },
      metrics: ['kl'],
      collective: true,
    }
  },
})
