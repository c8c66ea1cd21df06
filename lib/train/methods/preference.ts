// The preference method: ε-DPO, DPO (ε = 0), TR-DPO (DPO whose reference follows the policy) and
// β-DPO (batch-level β and filtering, beta-dpo.ts) as a loss plug-in of the engine. A micro-batch is the policy's hidden states (with grad), the
// frozen reference's (never), and the fused chunked loss; its per-pair statistics stay on the
// device until the step's end, where the global β accumulates s_i (spec §6) and metrics are made.
import * as path from 'node:path'

import { z } from 'zod'

import { collate, loadPreferenceData, paddingLayout, type PreferenceData, type TokenizedPair } from '../../data'
import { EdpoInputError } from '../../core/errors'
import { CausalLM } from '../../model'
import { epsilonDpoLossFromHiddenAsync, sequenceStatsFromHiddenAsync } from '../../core/ops'
import { checkInputErrors, pairRecordColumns } from '../../core/pair-record'
import { Tensor } from '../../core/tensor'
import { BetaController } from '../beta'
import { loraReference } from '../lora-run'
import type { TrainConfig } from '../config'
import { withLabelNoise } from '../label-noise'
import type { MicroBatchOutput, StepSummary, TrainingMethod } from '../method'
import type { Metrics } from '../metrics-log'
import { dataOptions, loadTrainedModel, type Run } from '../open-run'
import { preferenceMetrics } from '../step-metrics'
import type { TrainerState } from '../trainer-state'
import { BETA_DPO_STATE, BetaDpoCalibrator, betaDpoLoss } from './beta-dpo'

/** What this method adds to trainer_state.json: the global β to continue with. */
export const PREFERENCE_STATE = { beta: z.number().positive(), betaDpo: BETA_DPO_STATE.optional() }

export class PreferenceMethod implements TrainingMethod<TokenizedPair> {
  private constructor(
    readonly config: TrainConfig,
    /** The policy. */
    readonly model: CausalLM,
    readonly reference: CausalLM,
    readonly data: PreferenceData,
    private readonly beta: BetaController,
    /** beta-dpo only: the momentum statistics, filtering and batch β. */
    private readonly betaDpo: BetaDpoCalibrator | undefined,
  ) {}

  /** beta-dpo: the batch β of each training micro-batch of the current step. */
  private stepBetas: number[] = []

  get train(): readonly TokenizedPair[] {
    return this.data.train
  }
  get eval(): readonly TokenizedPair[] | undefined {
    return this.data.eval
  }
  /** The global β the next micro-batch uses. */
  get currentBeta(): number {
    return this.beta.beta
  }

  static async load(run: Run<TrainConfig, { beta: number; betaDpo?: z.infer<typeof BETA_DPO_STATE> }>): Promise<PreferenceMethod> {
    const { config: c, resumed } = run
    const data = await loadPreferenceData({ ...dataOptions(run), dataFormat: run.config.dataFormat })
    if (c.labelNoise > 0) {
      const noisy = withLabelNoise(data.train, c.labelNoise, c.seed)
      data.train = noisy.pairs
      run.log(`--label-noise ${c.labelNoise}: chosen and rejected swapped in ${noisy.flipped} of ${noisy.pairs.length} training pairs`)
    }
    if (c.criterionPrecision === 'bf16' && c.method !== 'epsilon-dpo')
      throw new EdpoInputError(`--criterion-precision bf16: only epsilon-dpo has a step decision (method is ${c.method})`)
    const policy = await loadTrainedModel(run)
    // The reference is the original model, except for TR-DPO, whose reference moves and is saved.
    const referenceDir = resumed && c.method === 'tr-dpo' ? path.join(resumed.dir, 'reference') : (c.referenceModel ?? c.model)
    // LoRA: the reference is the policy's own base (no second copy) unless --reference-model names one.
    const reference =
      policy.lora && c.referenceModel === undefined
        ? await loraReference(policy, c)
        : (run.log(`loading the reference from ${referenceDir} (frozen) …`),
          (await CausalLM.fromPretrained(referenceDir, { dtype: c.dtype, device: c.device, trainable: false })).eval())
    const beta = new BetaController(resumed?.file.beta ?? c.beta, c.method === 'epsilon-dpo' ? c.epsilon : 0)
    const betaDpo =
      c.method === 'beta-dpo'
        ? new BetaDpoCalibrator({ beta0: c.beta, alpha: c.betaDpoAlpha, rho: c.betaDpoRho, momentum: c.betaDpoMomentum }, c.seed, resumed?.file.betaDpo)
        : undefined
    return new PreferenceMethod(c, policy, reference, data, beta, betaDpo)
  }

  /** The longer of the pair's two rows (prompt + completion). */
  rowLength(pair: TokenizedPair): number {
    return pair.prompt.length + Math.max(pair.chosen.length, pair.rejected.length)
  }

  /** Policy forward (with or without grad), reference forward (never), then the fused chunked loss. */
  async microBatch(rows: readonly TokenizedPair[], o: { grad: boolean; lap?: (section: string) => void }): Promise<MicroBatchOutput> {
    const c = this.config
    const batch = collate(rows, this.data.tokenizer.padTokenId, { device: c.device })
    o.lap?.('batch')
    // Padding-free: the rows' lengths (host) replace the mask; the hidden states come back padded.
    const layout = c.paddingFree ? { sequenceLengths: Array.from(batch.rowLengths) } : paddingLayout(batch)
    const policyHidden = await this.model.forwardHiddenAsync(batch.inputIds, { ...layout, grad: o.grad })
    o.lap?.('policy forward')
    const referenceHidden = await this.reference.forwardHiddenAsync(batch.inputIds, { ...layout, grad: false })
    o.lap?.('reference forward')
    const ph = this.model.lmHead()
    const rh = this.reference.lmHead()
    // What both fused ops read: the two models' hidden states and heads, and the completion tokens.
    const heads = {
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
      // Prompt rows are skipped by index from the collator's host mask: no device read to find them.
      activeRows: batch.activeRows,
    }
    // The autograd graph keeps what the backward needs; these handles are no longer used after the op.
    const inputs = [policyHidden, referenceHidden, batch.inputIds, batch.attentionMask, batch.labels, batch.lossMask, batch.activeRows]
    if (this.betaDpo) {
      const seq = await sequenceStatsFromHiddenAsync(heads)
      // β-DPO's one read per micro-batch: its filtering samples on the host from the margins.
      const rows = 2 * batch.pairs
      const both = Tensor.cat([seq.logps.detach(), seq.referenceLogps!, seq.tokenCount.to('float64'), seq.inputError.reshape([1]).to('float64')])
      const host = both.toArray() as Float64Array
      const sums = { policy: host.slice(0, rows), reference: host.slice(rows, 2 * rows), tokens: host.slice(2 * rows, 3 * rows) }
      const out = betaDpoLoss(seq.logps, sums, this.betaDpo, o.grad, host[3 * rows]!, c.device)
      if (o.grad) this.stepBetas.push(out.calibration.beta)
      for (const t of [both, seq.correct, seq.tokenCount, seq.referenceLogps!, seq.kl, seq.inputError, ...inputs]) t?.dispose()
      return { loss: out.loss, stats: out.record, tokens: 2 * batch.pairs * batch.length }
    }
    const out = await epsilonDpoLossFromHiddenAsync({
      ...heads,
      beta: this.beta.beta,
      epsilon: c.method === 'epsilon-dpo' ? c.epsilon : 0,
      labelSmoothing: c.labelSmoothing,
      bf16Criterion: c.criterionPrecision === 'bf16',
    })
    for (const t of inputs) t.dispose()
    // The per-pair record is the step's stats, as the op returns it (device, float64 [B, k]).
    return { loss: out.loss, stats: out.record, tokens: 2 * batch.pairs * batch.length }
  }

  /** Metrics of the step's pairs; in training, their steps s_i also go into the β update. */
  summarize(stats: readonly Float64Array[], training: boolean): StepSummary {
    const batches = stats.map(pairRecordColumns)
    for (const b of batches) checkInputErrors(b.inputError)
    if (training) for (const b of batches) this.beta.accumulate(b.step)
    return preferenceMetrics(batches)
  }

  /** β ← β/(1 + ε·s̄) once per step; TR-DPO's reference sync every τ steps. */
  afterStep(state: TrainerState): Metrics {
    const update = this.beta.finishStep()
    state.beta = this.beta.beta
    if (this.betaDpo) {
      const s = this.betaDpo.state
      const betas = this.stepBetas
      this.stepBetas = []
      return { 'kl/beta': betas.reduce((a, b) => a + b, 0) / Math.max(1, betas.length), 'beta_dpo/m0': s.m0, 'beta_dpo/sigma': s.sigma }
    }
    if (this.config.method === 'tr-dpo' && state.step % this.config.trDpoTau === 0) this.syncReference()
    return { 'kl/beta': update.before, 'kl/avg_steps': update.avgSteps }
  }

  /** TR-DPO: hard copy of the policy into the reference, or ref ← α·θ + (1−α)·ref. */
  private syncReference(): void {
    const policy = this.model.namedParameters()
    for (const [name, ref] of this.reference.namedParameters()) {
      const theta = policy.get(name)!
      if (this.config.trDpoMode === 'hard') ref.copyInPlace(theta)
      else ref.mulInPlace(1 - this.config.trDpoAlpha).addInPlace(theta, this.config.trDpoAlpha)
    }
  }

  /** TR-DPO's reference moves, so a checkpoint keeps it (reference/) for an exact resume. */
  async saveFiles(dir: string): Promise<void> {
    if (this.config.method === 'tr-dpo') await this.reference.save(path.join(dir, 'reference'))
  }

  savedState(): { beta: number; betaDpo?: z.infer<typeof BETA_DPO_STATE> } {
    return this.betaDpo ? { beta: this.beta.beta, betaDpo: this.betaDpo.state } : { beta: this.beta.beta }
  }
}
