// Step and eval metrics weigh every pair alike (Hugging Face's eval_loss does): batches of
// different sizes do not count as equals, and the mean logits are token-weighted.
import t from 'tap'

import { PAIR_RECORD_COLUMNS, pairRecordColumns } from '../lib/core/pair-record'
import { preferenceMetrics } from '../lib/train/methods/step-metrics'

function record(rows: Partial<Record<(typeof PAIR_RECORD_COLUMNS)[number], number>>[]) {
  const k = PAIR_RECORD_COLUMNS.length
  const host = new Float64Array(rows.length * k)
  rows.forEach((r, i) => PAIR_RECORD_COLUMNS.forEach((c, j) => (host[i * k + j] = r[c] ?? 0)))
  return pairRecordColumns(host)
}

t.test('the loss is the mean over pairs, not over micro-batches', (t) => {
  const one = record([{ loss: 4, chosenRewards: 1, rejectedRewards: 0, chosenLogitSum: 10, chosenTokens: 10 }])
  const three = record([1, 1, 1].map((l) => ({ loss: l, chosenRewards: 0, rejectedRewards: 1, chosenLogitSum: 0, chosenTokens: 30 })))
  const m = preferenceMetrics([one, three])
  t.equal(m.loss, (4 + 1 + 1 + 1) / 4, 'pair-weighted (a batch mean would give 2.5)')
  t.equal(m['rewards/accuracies'], 1 / 4)
  t.equal(m['logits/chosen'], 10 / (10 + 3 * 30), 'token-weighted over the step')
  t.equal(m['kl/p_epsilon_steps'], 0)
  t.end()
})
