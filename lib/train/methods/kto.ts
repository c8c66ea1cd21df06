// KTO (losses/kto.ts) on paired data, as TRL's KTOTrainer treats a pair: one desirable and one
// undesirable example. Its reference point z₀ is the micro-batch's KL estimate from mismatched
// completions: pair i's prompt with pair (i+1 mod B)'s chosen and rejected completions, run
// through the policy and the reference without gradients (2B more rows, both forwards).
import { z } from 'zod'

import { collate, paddingLayout, type TokenizedPair } from '../../data'
import { EdpoInputError } from '../../core/errors'
import { sequenceStatsFromHiddenAsync } from '../../core/ops'
import { Tensor } from '../../core/tensor'
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

/** Each prompt with the next pair's completions, cut to fit maxLength as the pair's own rows were. */
export function mismatchedPairs(rows: readonly TokenizedPair[], maxLength: number): TokenizedPair[] {
  return rows.map((p, i) => {
    const next = rows[(i + 1) % rows.length]!
    const room = Math.max(1, maxLength - p.prompt.length)
    return { source: p.source, prompt: p.prompt, chosen: next.chosen.subarray(0, room), rejected: next.rejected.subarray(0, room) }
  })
}

/** The KL rows' sums; undefined for a micro-batch of one pair (no other completion to pair its prompt with). */
async function klSums(ctx: BaselineContext): Promise<KtoKlSums | undefined> {
  const { method, rows } = ctx
  const c = method.config
  if (rows.length < 2) return undefined
  const reference = method.reference!
  const batch = collate(mismatchedPairs(rows, c.maxLength), method.data.tokenizer.padTokenId, { device: c.device })
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
        // One pair alone (a last partial micro-batch): z₀ = 0, written as equal KL sums.
        const kl = (await klSums(ctx)) ?? {
          policy: Tensor.zeros([1], { dtype: 'float64', device: c.device }),
          reference: Tensor.zeros([1], { dtype: 'float64', device: c.device }),
        }
        return ktoLoss(sums, kl, { beta, ...o })
      },
      metrics: ['kl'],
    }
  },
})
