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
import { openRunToResume, prepareNewRun } from './run-folder'
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
    if (opts.resume !== undefined && input.overwriteOutputDir)
      throw new EdpoInputError(`--resume ${opts.resume} continues a run; --overwrite-output-dir starts over: give one of them`)
    const from = opts.resume !== undefined ? openRunToResume(opts.resume, log) : undefined
    const resumed = from ? readTrainerState(from.dir) : undefined
    const parsed = trainConfigSchema.safeParse(resumed ? { ...resumed.file.config, out: opts.resume } : input)
    if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'config'))
    const config = parsed.data
    // The folder is checked before the model loads or the data is tokenized (minutes at 8B).
    if (resumed) MetricsLog.truncateAfter(config.out, resumed.file.step, log)
    else prepareNewRun(config.out, config.overwriteOutputDir, log)

    const data = await loadPreferenceData({
      data: config.data,
      evalData: config.evalData,
      evalFraction: config.evalFraction,
      tokenizer: config.model,
      maxLength: config.maxLength,
      maxPromptLength: config.maxPromptLength,
      maxCompletionLength: config.maxCompletionLength,
      truncationMode: config.truncationMode,
      dataFormat: config.dataFormat,
      skipInvalid: config.skipInvalid,
      invalidRowsFile: path.join(config.out, 'invalid-rows.jsonl'),
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
      if (!Number.isFinite(out.loss.item())) throw this.badState('the loss is not finite')
      const scaled = out.loss.mul(1 / c.gradAccumulation)
      await scaled.backwardAsync()
      m.add(out, 2 * batch.pairs * batch.length)
      this.beta.accumulate(out.steps.toArray() as BigInt64Array)
      // Free device memory now rather than at the next garbage collection.
      release(scaled, ...Object.values(out), batch.inputIds, batch.attentionMask, batch.labels, batch.lossMask)
    }
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
      ...m.summary(),
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
      m.add(out, 2 * batch.pairs * batch.length)
      release(...Object.values(out), batch.inputIds, batch.attentionMask, batch.labels, batch.lossMask)
    }
    return m.summary('eval_')
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
