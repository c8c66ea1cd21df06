// Trainer: the whole ε-DPO training loop (and DPO, TR-DPO), readable top to bottom.
//   create(): config → data → policy + reference → AdamW → (resume)
//   train():  per optimizer step: micro-batches (policy forward with grad, reference without, the
//             fused chunked loss, backward) → clip → AdamW → β update → TR-DPO sync → metrics →
//             eval / checkpoint → until maxSteps, an abort signal or an error.
import { EventEmitter } from 'node:events'
import * as path from 'node:path'

import { type Batch, collate, loadPreferenceData, PairSampler, type PreferenceData } from '../data'
import { EdpoError, EdpoInputError } from '../errors'
import { loadSafetensors } from '../io'
import { CausalLM } from '../model'
import { epsilonDpoLossFromHiddenAsync, type EpsilonDpoLossResult } from '../ops'
import { formatZodError } from '../validate'
import { AdamW } from './adamw'
import { BetaController } from './beta'
import { CheckpointManager } from './checkpoints'
import { type TrainConfig, type TrainConfigInput, trainConfigSchema } from './config'
import type { Tensor } from '../tensor'
import { type Metrics, MetricsLog } from './metrics-log'
import { lrMultiplier } from './schedule'
import { runTrainingLoop, writeModelCheckpoint } from './loop'
import { StepMetrics } from './step-metrics'
import { TrainerState, type TrainerStateFile, readTrainerState, writeTrainerState } from './trainer-state'

/** Training stopped on a bad state (non-finite loss or gradient). */
export class EdpoTrainingError extends EdpoError {
  constructor(message: string) {
    super(message, 'EDPO_TRAINING')
  }
}

export interface TrainerEvents {
  log: [Metrics & { step: number }]
  step: [TrainerState]
  eval: [Metrics & { step: number }]
  checkpoint: [string]
}

export interface CreateOptions {
  /** Continue from the newest checkpoint in this run folder (its stored config is used). */
  resume?: string
  /** Receives data reports and notices; default: standard error. */
  log?: (line: string) => void
}

export { TOKENIZER_FILES } from './loop'

export class Trainer extends EventEmitter<TrainerEvents> {
  readonly state: TrainerState

  private constructor(
    readonly config: TrainConfig,
    readonly policy: CausalLM,
    readonly reference: CausalLM,
    readonly data: PreferenceData,
    private readonly optimizer: AdamW,
    private readonly sampler: PairSampler,
    private readonly beta: BetaController,
    private readonly checkpoints: CheckpointManager,
    private readonly metricsLog: MetricsLog,
    state: TrainerState,
  ) {
    super()
    this.state = state
  }

  static async create(input: TrainConfigInput, opts: CreateOptions = {}): Promise<Trainer> {
    const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'))
    const resumed = opts.resume ? readTrainerState(opts.resume) : undefined
    const parsed = trainConfigSchema.safeParse(resumed ? resumed.file.config : input)
    if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'config'))
    const config = parsed.data

    const data = await loadPreferenceData({
      data: config.data,
      evalData: config.evalData,
      evalFraction: config.evalFraction,
      tokenizer: config.model,
      maxLength: config.maxLength,
      maxPromptLength: config.maxPromptLength,
      skipInvalid: config.skipInvalid,
      seed: config.seed,
      log,
    })

    const load = (dir: string) => CausalLM.fromPretrained(dir, { dtype: config.dtype, device: config.device })
    const policy = await load(resumed ? resumed.dir : config.model)
    // The reference is the original model, except for TR-DPO, whose reference moves and is saved.
    const referenceDir =
      resumed && config.method === 'tr-dpo' ? path.join(resumed.dir, 'reference') : (config.referenceModel ?? config.model)
    const reference = (
      await CausalLM.fromPretrained(referenceDir, { dtype: config.dtype, device: config.device, trainable: false })
    ).eval()
    policy.train().setGradientCheckpointing(config.gradientCheckpointing)

    const optimizer = new AdamW(policy.namedParameters(), {
      betas: [config.adamBeta1, config.adamBeta2],
      eps: config.adamEpsilon,
      weightDecay: config.weightDecay,
    })
    const sampler = new PairSampler(data.train.length, {
      batchSize: config.batchSize,
      seed: config.seed,
      shuffle: true,
      state: resumed?.file.sampler,
    })
    const totalSteps = config.maxSteps ?? Math.ceil((config.epochs * sampler.batchesPerEpoch) / config.gradAccumulation)
    const beta = new BetaController(resumed?.file.beta ?? config.beta, config.method === 'epsilon-dpo' ? config.epsilon : 0)
    if (resumed) {
      optimizer.loadState(loadSafetensors(path.join(resumed.dir, 'optimizer.safetensors')), resumed.file.step)
      MetricsLog.truncateAfter(config.out, resumed.file.step)
      log(`resumed from ${resumed.dir} at step ${resumed.file.step} (β = ${resumed.file.beta})`)
    }
    const state = new TrainerState(resumed?.file.step ?? 0, totalSteps, beta.beta, sampler.currentEpoch)
    return new Trainer(
      config,
      policy,
      reference,
      data,
      optimizer,
      sampler,
      beta,
      new CheckpointManager(config.out, config.keepLast),
      new MetricsLog(config.out),
      state,
    )
  }

  /** Runs until totalSteps or `signal` aborts; always ends with a checkpoint of the last step. */
  async train(opts: { signal?: AbortSignal } = {}): Promise<TrainerState> {
    return runTrainingLoop(
      {
        config: this.config,
        state: this.state,
        checkpoints: this.checkpoints,
        metricsLog: this.metricsLog,
        trainStep: () => this.trainStep(),
        evaluate: () => this.evaluate(),
        saveCheckpoint: () => this.saveCheckpoint(),
        onLog: (entry) => this.emit('log', entry),
        onStep: (state) => this.emit('step', state),
        onEval: (entry) => this.emit('eval', entry),
      },
      opts.signal,
    )
  }

  /** One optimizer step over gradAccumulation micro-batches. */
  private async trainStep(): Promise<Metrics> {
    const c = this.config
    const started = performance.now()
    const m = new StepMetrics()
    for (let k = 0; k < c.gradAccumulation; k++) {
      const next = this.sampler.next()
      const batch = collate(
        next.indices.map((i) => this.data.train[i]!),
        this.data.tokenizer.padTokenId,
        { device: c.device },
      )
      const out = await this.loss(batch, true)
      const scaled = out.loss.mul(1 / c.gradAccumulation)
      await scaled.backwardAsync()
      // The record stays on the device: nothing of this micro-batch is read to the host here.
      m.add(out.record, 2 * batch.pairs * batch.length)
      // Free device memory now rather than at the next garbage collection.
      release(scaled, out.loss, ...batchTensors(batch))
    }
    // The step's two host reads: every pair's record at once, and the clip's gradient norm.
    const records = m.read()
    if (records && !records.loss.every(Number.isFinite)) throw this.badState('the loss is not finite')
    this.beta.accumulate(records?.step ?? [])
    const gradNorm = this.optimizer.clipGradNorm(c.maxGradNorm)
    if (!Number.isFinite(gradNorm)) throw this.badState(`the gradient norm is ${gradNorm}`)
    const lr = c.learningRate * lrMultiplier(c.lrScheduler, this.state.step, this.state.totalSteps, c.warmupRatio)
    await this.optimizer.step(lr)
    this.optimizer.zeroGrad()
    const beta = this.beta.finishStep()
    this.state.step += 1
    this.state.beta = this.beta.beta
    const position = this.sampler.state()
    const epoch = position.epoch + position.position / this.data.train.length
    this.state.epoch = epoch
    if (c.method === 'tr-dpo' && this.state.step % c.trDpoTau === 0) this.syncReference()
    const seconds = (performance.now() - started) / 1000
    this.state.metrics = {
      ...m.summary(records),
      grad_norm: gradNorm,
      learning_rate: lr,
      'kl/beta': beta.before,
      'kl/avg_steps': beta.avgSteps,
      tokens_per_second: m.tokens / seconds,
      step_time: seconds,
      epoch,
    }
    return this.state.metrics
  }

  /** Policy forward (with or without grad), reference forward (never), then the fused chunked loss. */
  private async loss(batch: Batch, withGrad: boolean): Promise<EpsilonDpoLossResult> {
    const c = this.config
    const mask = batch.attentionMask
    const policyHidden = await this.policy.forwardHiddenAsync(batch.inputIds, { attentionMask: mask, grad: withGrad })
    const referenceHidden = await this.reference.forwardHiddenAsync(batch.inputIds, { attentionMask: mask, grad: false })
    const ph = this.policy.lmHead()
    const rh = this.reference.lmHead()
    const out = await epsilonDpoLossFromHiddenAsync({
      policyHidden,
      policyHead: ph.weight,
      policyBias: ph.bias,
      referenceHidden,
      referenceHead: rh.weight,
      referenceBias: rh.bias,
      labels: batch.labels,
      lossMask: batch.lossMask,
      activeRows: batch.activeRows,
      beta: this.beta.beta,
      epsilon: c.method === 'epsilon-dpo' ? c.epsilon : 0,
      labelSmoothing: c.labelSmoothing,
      finalLogitSoftcap: ph.finalLogitSoftcap || undefined,
      chunkTokens: c.chunkTokens,
    })
    // The autograd graph keeps what the backward needs; these handles are no longer used.
    release(policyHidden, referenceHidden)
    return out
  }

  /** Eval loss, reward accuracy and margins on the eval split; never changes β (spec §7). */
  async evaluate(): Promise<Metrics | undefined> {
    const pairs = this.data.eval
    if (!pairs || pairs.length === 0) return undefined
    const m = new StepMetrics()
    for (let start = 0; start < pairs.length; start += this.config.batchSize) {
      const batch = collate(pairs.slice(start, start + this.config.batchSize), this.data.tokenizer.padTokenId, {
        device: this.config.device,
      })
      const out = await this.loss(batch, false)
      m.add(out.record, 2 * batch.pairs * batch.length)
      release(out.loss, ...batchTensors(batch))
    }
    // One host read for the whole evaluation pass.
    return m.summary(m.read(), 'eval_')
  }


  /** TR-DPO: hard copy of the policy into the reference, or ref ← α·θ + (1−α)·ref. */
  private syncReference(): void {
    const policy = this.policy.namedParameters()
    for (const [name, ref] of this.reference.namedParameters()) {
      const theta = policy.get(name)!
      if (this.config.trDpoMode === 'hard') ref.copyInPlace(theta)
      else ref.mulInPlace(1 - this.config.trDpoAlpha).addInPlace(theta, this.config.trDpoAlpha)
    }
  }

  /** Writes checkpoint-<step>: the HF policy, optimizer state, trainer_state.json (and TR-DPO's reference). */
  async saveCheckpoint(): Promise<string> {
    const dir = await this.checkpoints.save(this.state.step, async (dir) => {
      await writeModelCheckpoint(dir, this.policy, this.config.model, this.optimizer)
      if (this.config.method === 'tr-dpo') await this.reference.save(path.join(dir, 'reference'))
      const file: TrainerStateFile = {
        step: this.state.step,
        totalSteps: this.state.totalSteps,
        beta: this.beta.beta,
        epoch: this.state.epoch,
        sampler: this.sampler.state(),
        config: this.config,
      }
      writeTrainerState(dir, file)
    })
    this.emit('checkpoint', dir)
    return dir
  }

  private badState(what: string): EdpoTrainingError {
    const last = this.checkpoints.latest()
    return new EdpoTrainingError(
      `step ${this.state.step + 1}: ${what}; stopped. Last checkpoint: ${last ? last.dir : 'none yet'}`,
    )
  }
}

function release(...tensors: Tensor[]): void {
  for (const t of tensors) t.dispose()
}

function batchTensors(batch: Batch): Tensor[] {
  return [batch.inputIds, batch.attentionMask, batch.labels, batch.lossMask, batch.activeRows]
}
