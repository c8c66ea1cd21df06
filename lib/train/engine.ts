// The one training engine behind every method (ε-DPO, DPO, TR-DPO, SFT; lib/train/methods/),
// readable top to bottom:
//   train(): per optimizer step: gradAccumulation micro-batches (rows → method.microBatch with
//            grad → backward of loss/gradAccumulation, nothing read back) → one host read of the
//            step's statistics → method.summarize (finite-loss check) → clip → AdamW →
//            method.afterStep (β update, reference sync) → metrics → log / eval / checkpoint →
//            until totalSteps, an abort signal or an error; always ends with a checkpoint.
//   evaluate(), saveCheckpoint(), resume (through open-run.ts and trainer_state.json), events.
// The two public trainers close the file: Trainer (preference methods, the one config.method names
// in methods/index.ts) and SftTrainer (methods/sft.ts); each is the engine with its method loaded.
// On several ranks (lib/distributed/) the same loop runs on every rank: a DataParallel (dp) shards each
// micro-batch, syncs gradients, gathers the step's statistics and shards the optimizer (ZeRO);
// rank 0 writes metrics and checkpoints. With one process each dp hook is the identity.
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { PairSampler } from '../data'
import type { PreferenceData, SftData, SftExample, TokenizedPair } from '../data'
import type { CausalLM } from '../model'
import { checkMethodOptions, storedTrainConfig, type TrainConfig, type TrainConfigInput, trainConfigSchema } from './config'
import { METHODS } from './methods'
import type { BetaState, PreferenceMethod } from './methods/preference'
import { SFT, type SftMethod } from './methods/sft'
import { type CreateOptions, openRunOnRanks } from './open-run'
import { type SftConfig, type SftConfigInput, sftConfigSchema } from './sft-config'
import { applyStepFractions } from './step-fractions'
import { DataParallel, type ZeroStage } from '../distributed/data-parallel'
import { OPTIMIZER_FILE, optimizerShardFile } from '../distributed/optimizer-shards'
import { saveShardedModel, shardForZero3 } from '../distributed/zero3'
import { resumeOptimizerState } from '../distributed/zero3-resume'
import { EdpoError, EdpoInputError } from '../core/errors'
import { saveSafetensors } from '../io'
import { trimHeap } from '../core/memory'
import { Tensor } from '../core/tensor'
import { AdamW } from './adamw'
import { CheckpointManager } from './checkpoints'
import { saveTrainedModel } from './lora-run'
import type { RunConfig } from './run-options'
import type { BatchShare, TrainingMethod } from './method'
import { gradientBytes, liveTensorBytes, memoryMetrics, memoryReport, memoryReportEnabled, resetMemoryPeaks } from './memory-report'
import { type Metrics, MetricsLog } from './metrics-log'
import type { Run } from './open-run'
import { lrMultiplier } from './schedule'
import { parseStepRange, StepProfiler } from './step-profiler'
import { hfTrainerStateFields, TrainerState, writeTrainerState } from './trainer-state'

/** Training stopped on a bad state (non-finite loss or gradient). */
export class EdpoTrainingError extends EdpoError {
  constructor(message: string) {
    super(message, 'EDPO_TRAINING')
  }
}

export interface TrainerEvents<S extends object = Record<string, unknown>> {
  log: [Metrics & { step: number }]
  step: [TrainerState<S>]
  eval: [Metrics & { step: number }]
  checkpoint: [string]
  /** --profile-steps: the summary.md written after the range's last step. */
  profile: [string]
}

/** The settings the engine reads: what every run has (RUN_OPTIONS). */
export type EngineConfig = RunConfig

// Tokenizer and chat-template files copied next to each checkpoint, so it is a usable model folder.
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']

/** The method's own state, as trainer.state.method holds it. */
type StateOf<M> = M extends TrainingMethod<unknown, infer S> ? S : never

export class Engine<C extends EngineConfig, Row, M extends TrainingMethod<Row, object> = TrainingMethod<Row>> extends EventEmitter<TrainerEvents<StateOf<M>>> {
  readonly config: C
  readonly state: TrainerState<StateOf<M>>
  private readonly optimizer: AdamW
  private readonly sampler: PairSampler
  private readonly checkpoints: CheckpointManager
  private readonly metricsLog: MetricsLog
  private readonly dp: DataParallel
  /** The parameters that train (with LoRA the adapters), in model order. */
  private readonly trainable: Tensor[]
  /** The step of the last checkpoint written or resumed from (the same on every rank, unlike the folder listing). */
  private savedStep: number | undefined
  /** On several ranks: a stop all of them agreed on at the last step's gather. */
  private stopAgreed = false
  /** --profile-steps. */
  private readonly profiler: StepProfiler | undefined

  /** @internal Trainers are made by their static create(). */
  protected constructor(
    run: Run<C, object>,
    /** @internal The loss plug-in (methods/). */
    protected readonly method: M,
  ) {
    super()
    const { config: c, resumed } = run
    this.config = c
    method.model.train().setGradientCheckpointing(c.gradientCheckpointing)
    // --bucket-mb: the bucket size at ZeRO-0/1/2, the reduce-scatters' bytes in flight at ZeRO-3.
    const bucketBytes = Math.max(1, Math.round(c.bucketMb * 2 ** 20))
    if (c.zeroStage === 3) shardForZero3(run.dist, method.model, method.reference, { shardReference: c.shardReference, bucketBytes })
    // With LoRA only the adapters train (and are averaged and sharded).
    const named = [...method.model.trainableParameters()]
    this.trainable = named.map(([, p]) => p)
    this.dp = new DataParallel(run.dist, c.zeroStage as ZeroStage, this.trainable, {
      overlap: c.gradOverlap,
      bucketBytes,
      shardedModel: c.zeroStage === 3 ? method.model : undefined,
    })
    this.optimizer = new AdamW(this.dp.owned(named), { betas: [c.adamBeta1, c.adamBeta2], eps: c.adamEpsilon, weightDecay: c.weightDecay })
    // The sampler draws global micro-batches (batch × world); each rank trains its block of each.
    // --group-by-length: the order is a function of the lengths too, which resume recomputes from the same data.
    const lengths = c.groupByLength ? method.train.map((row) => method.rowLength(row)) : undefined
    this.sampler = new PairSampler(method.train.length, {
      batchSize: c.batchSize * this.dp.world,
      seed: c.seed,
      shuffle: true,
      state: resumed?.file.sampler,
      lengths,
    })
    const totalSteps = c.maxSteps ?? Math.ceil((c.epochs * this.sampler.batchesPerEpoch) / c.gradAccumulation)
    if (resumed) {
      const saved = { stage: (resumed.file.config as { zeroStage?: number }).zeroStage ?? 0 }
      const now = { stage: c.zeroStage, rank: this.dp.rank, world: this.dp.world, sharded: this.dp.sharded }
      resumeOptimizerState(this.optimizer, resumed.dir, method.model, saved, now, resumed.file.step)
      this.savedStep = resumed.file.step
      const own = Object.entries(method.savedState()).filter(([, v]) => typeof v === 'number')
      run.log(`resumed from ${resumed.dir} at step ${resumed.file.step}` + (own.length > 0 ? ` (${own.map(([k, v]) => `${k} = ${v}`).join(', ')})` : ''))
    }
    this.checkpoints = new CheckpointManager(c.out, c.keepLast)
    this.metricsLog = new MetricsLog(c.out)
    this.state = new TrainerState(resumed?.file.step ?? 0, totalSteps, this.sampler.currentEpoch, method.savedState() as StateOf<M>)
    const range = c.profileSteps === undefined ? undefined : parseStepRange(c.profileSteps)
    const profileDir = path.join(c.out, 'profile', this.dp.world > 1 ? `rank-${this.dp.rank}` : '')
    this.profiler = range ? new StepProfiler(range, c.device, profileDir) : undefined
    if (range && (range.last <= this.state.step || range.first > totalSteps))
      run.log(`note: --profile-steps ${c.profileSteps} lies outside this run's steps ${this.state.step + 1}-${totalSteps}: nothing will be profiled`)
  }

  /**
   * Frees the run's tensors now rather than at the next garbage collection: the policy's and the
   * reference's weights, the optimizer's state and the gradient reducer's buckets, so that a
   * process can run trainer after trainer. The trainer cannot train, evaluate or save afterwards; a
   * process group passed in (opts.dist) stays its caller's. A second call does nothing.
   */
  dispose(): void {
    if (this.busy) throw new EdpoInputError('dispose(): the trainer is still training or evaluating; await it first')
    if (this.disposed) return
    this.disposed = true
    this.optimizer.dispose()
    this.dp.dispose()
    for (const p of this.trainable) p.dispose()
    this.method.reference?.dispose()
    this.method.model.dispose()
  }

  private disposed = false
  /** train() or evaluate() is running: dispose() waits for them. */
  private busy = false

  private checkLive(what: string): void {
    if (this.disposed) throw new EdpoInputError(`${what}(): this trainer was disposed`)
  }

  /** Runs until totalSteps or `signal` aborts; always ends with a checkpoint of the last step. */
  async train(opts: { signal?: AbortSignal } = {}): Promise<TrainerState<StateOf<M>>> {
    this.checkLive('train')
    this.busy = true
    try {
      return await this.runTraining(opts)
    } finally {
      this.busy = false
    }
  }

  private async runTraining(opts: { signal?: AbortSignal }): Promise<TrainerState<StateOf<M>>> {
    const { config: c, state } = this
    try {
      while (state.step < state.totalSteps && !(this.dp.group ? this.stopAgreed : opts.signal?.aborted)) {
        const metrics = await this.trainStep(opts.signal)
        const step = state.step
        if (step % c.logEvery === 0 || step === state.totalSteps) this.record('log', { step, ...metrics })
        this.emit('step', state)
        if (c.evalEvery > 0 && step % c.evalEvery === 0 && step < state.totalSteps) await this.evaluateAndLog()
        if (c.saveEvery > 0 && step % c.saveEvery === 0 && step < state.totalSteps) await this.saveCheckpoint()
      }
    } finally {
      // A run that stopped inside the profiled range: the profiler stops, and what it has is written.
      const summary = this.profiler?.finish()
      if (summary) this.emit('profile', summary)
    }
    if (state.step === state.totalSteps) await this.evaluateAndLog()
    if (this.savedStep !== state.step) await this.saveCheckpoint()
    return state
  }

  /** One optimizer step over gradAccumulation micro-batches. */
  private async trainStep(signal?: AbortSignal): Promise<Metrics> {
    const c = this.config
    // Before the clock starts: starting the profiler is not part of the step (its sections and
    // step_time then cover the same span).
    const profiler = this.profiler?.beginStep(this.state.step + 1) ? this.profiler : undefined
    const lap = profiler ? (section: string) => profiler.lap(section) : undefined
    const started = performance.now()
    const reportMemory = memoryReportEnabled()
    if (reportMemory) resetMemoryPeaks(c.device)
    let activations = 0
    const stats: Tensor[] = []
    const counts: number[][] = []
    let tokens = 0
    for (let k = 0; k < c.gradAccumulation; k++) {
      const global = this.sampler.next().indices.map((i) => this.method.train[i]!)
      const rows = this.dp.shard(global)
      counts.push(this.dp.counts(global.length))
      // Every rank arms, with rows or without: the reduction's collectives must match.
      if (k === c.gradAccumulation - 1) this.dp.beforeLastBackward()
      const standIn = rows.length === 0 && this.everyRankRuns
      if (rows.length === 0 && !standIn) continue
      const before = reportMemory ? liveTensorBytes(c.device) : 0
      // A rank without rows runs a global row weighted 0 where the micro-batch holds collectives.
      const out = await this.method.microBatch(standIn ? global.slice(0, 1) : rows, {
        grad: true,
        lap,
        share: this.share(counts[counts.length - 1]!, standIn, global),
      })
      lap?.('loss')
      // What the forward leaves alive for the backward (the graph's saved tensors): the activations.
      if (reportMemory) activations = Math.max(activations, liveTensorBytes(c.device) - before)
      const weight = standIn ? 0 : this.dp.lossWeight(this.lossCount(rows), this.lossCount(global))
      const scaled = out.loss.mul(weight / c.gradAccumulation)
      await scaled.backwardAsync()
      lap?.('backward')
      // Free device memory now rather than at the next garbage collection; the stats wait for the step's end.
      scaled.dispose()
      out.loss.dispose()
      if (standIn) {
        out.stats.dispose()
        continue
      }
      stats.push(out.stats)
      tokens += out.tokens
    }
    // Without the reducer each rank builds every gradient before the sync: that is the step's peak.
    const peakGradients = reportMemory && !this.dp.overlapped ? gradientBytes(this.trainable) : 0
    await this.dp.syncGradients()
    lap?.('gradient sync')
    // The step's one read of the device (besides the gradient norm): every micro-batch's statistics.
    const gathered = await this.dp.gatherStats(readBack(stats), counts, signal?.aborted ?? false, tokens)
    this.stopAgreed = gathered.stop
    tokens = gathered.tokens
    const summary = this.method.summarize(gathered.views, true)
    if (!Number.isFinite(summary.loss)) throw this.badState('the loss is not finite')
    lap?.('read stats')
    const gradNorm = await this.dp.clipGradNorm(c.maxGradNorm, () => this.optimizer.clipGradNorm(c.maxGradNorm))
    if (!Number.isFinite(gradNorm)) throw this.badState(`the gradient norm is ${gradNorm}`)
    lap?.('clip')
    const lr = c.learningRate * lrMultiplier(c.lrScheduler, this.state.step, this.state.totalSteps, c.warmupRatio)
    await this.optimizer.step(lr)
    lap?.('optimizer')
    // Before zeroGrad: the step's state is all live here (weights, master, moments, gradients).
    const memory = reportMemory ? memoryMetrics(this.memoryReport(activations, Math.max(peakGradients, this.dp.lastReduction?.peakGradientBytes ?? 0))) : {}
    this.optimizer.zeroGrad()
    await this.dp.afterOptimizerStep()
    lap?.('zero grad')
    // The step's activations and gradients are freed now: give their pages back, so RSS does not
    // climb from step to step with what glibc keeps of them (bench/RESULTS.md, training memory).
    trimHeap()
    lap?.('trim heap')
    this.state.step += 1
    const position = this.sampler.state()
    const epoch = position.epoch + position.position / this.method.train.length
    this.state.epoch = epoch
    const after = this.method.afterStep?.(this.state) ?? {}
    this.state.method = this.method.savedState() as StateOf<M>
    const seconds = (performance.now() - started) / 1000
    this.state.metrics = {
      ...summary,
      grad_norm: gradNorm,
      learning_rate: lr,
      ...after,
      tokens_per_second: tokens / seconds,
      step_time: seconds,
      epoch,
      ...this.dp.reductionMetrics(),
      ...memory,
    }
    const written = profiler?.endStep(this.state.step)
    if (written) this.emit('profile', written)
    return this.state.metrics
  }

  // The memory report's owners: the method's models, the optimizer's state, the gradients now.
  private memoryReport(activations: number, peakGradients: number): ReturnType<typeof memoryReport> {
    const policy = [...this.method.model.namedParameters().values()]
    const reference = this.method.reference ? [...this.method.reference.namedParameters().values()] : []
    const grads = policy.flatMap((p) => p.grad ?? [])
    const report = memoryReport({
      policy,
      reference,
      optimizerState: this.optimizer.stateTensors(),
      grads,
      peakGradients,
      activations,
      device: this.config.device,
    })
    // These handles alias live tensors; disposing them frees nothing but the handles.
    for (const t of [...policy, ...reference, ...grads]) t.dispose()
    return report
  }

  /**
   * Whether a rank without rows still runs each micro-batch (on a stand-in row): ZeRO-3's gathers
   * and a collective loss (β-DPO) are collectives every rank must join.
   */
  private get everyRankRuns(): boolean {
    return this.dp.forwardsEveryBatch || (this.dp.group !== undefined && this.method.collectiveLoss === true)
  }

  /** On several ranks: where this rank's rows sit in the global micro-batch split `counts`. */
  private share(counts: readonly number[], standIn: boolean, rows: readonly Row[]): BatchShare<Row> | undefined {
    return this.dp.group ? { counts, rank: this.dp.rank, standIn, rows } : undefined
  }

  /** The method's metrics (eval_-prefixed) on the eval split, or on `rows`; changes no state. */
  async evaluate(rows: readonly Row[] | undefined = this.method.eval): Promise<Metrics | undefined> {
    this.checkLive('evaluate')
    // Inside train() it is busy already; alone, dispose() must wait for it.
    const outer = !this.busy
    this.busy = true
    try {
      return await this.evaluateRows(rows)
    } finally {
      if (outer) this.busy = false
    }
  }

  private async evaluateRows(rows: readonly Row[] | undefined): Promise<Metrics | undefined> {
    if (!rows || rows.length === 0) return undefined
    const stats: Tensor[] = []
    const counts: number[][] = []
    const size = this.config.batchSize * this.dp.world
    for (let start = 0; start < rows.length; start += size) {
      const global = rows.slice(start, start + size)
      const mine = this.dp.shard(global)
      counts.push(this.dp.counts(global.length))
      const standIn = mine.length === 0 && this.everyRankRuns
      if (mine.length === 0 && !standIn) continue
      const out = await this.method.microBatch(standIn ? global.slice(0, 1) : mine, {
        grad: false,
        share: this.share(counts[counts.length - 1]!, standIn, global),
      })
      out.loss.dispose()
      if (standIn) out.stats.dispose()
      else stats.push(out.stats)
    }
    const summary = this.method.summarize((await this.dp.gatherStats(readBack(stats), counts, false)).views, false)
    return Object.fromEntries(Object.entries(summary).map(([k, v]) => [`eval_${k}`, v]))
  }

  private savedModels(): readonly (readonly [string, CausalLM])[] {
    return this.method.savedModels?.() ?? []
  }

  /** Writes checkpoint-<step>: the HF model folder (with LoRA: the PEFT adapter folder) with tokenizer files, optimizer state, the method's files, trainer_state.json. */
  async saveCheckpoint(): Promise<string> {
    this.checkLive('saveCheckpoint')
    const { dp, state } = this
    this.savedStep = state.step
    const shard = dp.sharded ? optimizerShardFile(dp.rank, dp.world) : OPTIMIZER_FILE
    // ZeRO-3: every rank gathers the model unit by unit; rank 0 writes it.
    const gathered = dp.forwardsEveryBatch
    if (!dp.isMain) {
      // ZeRO: this rank's optimizer shard goes into rank 0's temporary folder between its two barriers.
      if (dp.sharded) {
        await dp.group!.barrier()
        saveSafetensors(path.join(this.checkpoints.tempDir(state.step, 0), shard), this.optimizer.stateTensors())
        // The same gathers as rank 0's below, in the same order: the policy, then the method's models.
        if (gathered) for (const model of [this.method.model, ...this.savedModels().map(([, m]) => m)]) await saveShardedModel(dp.group!, model, undefined)
        await dp.group!.barrier()
      }
      return path.join(this.config.out, `checkpoint-${state.step}`)
    }
    const dir = await this.checkpoints.save(
      state.step,
      async (dir) => {
        // The folder exists: the other ranks write their shards while rank 0 writes the rest.
        if (dp.sharded) await dp.group!.barrier()
        if (gathered) await saveShardedModel(dp.group!, this.method.model, dir)
        else await saveTrainedModel(this.method.model, dir, this.config.model)
        for (const f of TOKENIZER_FILES) {
          const src = path.join(this.config.model, f)
          if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dir, f))
        }
        saveSafetensors(path.join(dir, shard), this.optimizer.stateTensors())
        for (const [sub, model] of this.savedModels())
          if (gathered) await saveShardedModel(dp.group!, model, path.join(dir, sub))
          else await model.save(path.join(dir, sub))
        const s = this.state
        writeTrainerState(dir, {
          ...hfTrainerStateFields(s.step, s.totalSteps, s.epoch, this.config),
          ...this.method.savedState(),
          step: s.step,
          totalSteps: s.totalSteps,
          epoch: s.epoch,
          sampler: this.sampler.state(),
          config: this.config,
        })
        // Only when every rank has written its shard may the completion marker follow.
        if (dp.sharded) await dp.group!.barrier()
      },
      dp.group ? 0 : undefined,
    )
    this.emit('checkpoint', dir)
    return dir
  }

  private async evaluateAndLog(): Promise<void> {
    const metrics = await this.evaluate()
    if (metrics) this.record('eval', { step: this.state.step, ...metrics })
  }

  private lossCount(rows: readonly Row[]): number {
    return this.method.lossCount?.(rows) ?? rows.length
  }

  private record(event: 'log' | 'eval', entry: Metrics & { step: number }): void {
    if (this.dp.isMain) this.metricsLog.write(entry)
    this.emit(event, entry)
  }

  private badState(what: string): EdpoTrainingError {
    const last = this.checkpoints.latest()
    return new EdpoTrainingError(`step ${this.state.step + 1}: ${what}; stopped. Last checkpoint: ${last ? last.dir : 'none yet'}`)
  }
}

export class Trainer extends Engine<TrainConfig, TokenizedPair, PreferenceMethod> {
  private constructor(run: Run<TrainConfig, BetaState>, method: PreferenceMethod) {
    super(run, method)
  }

  /** A new run from its config, or (opts.resume) a stored run continued, `input` holding only what changes. */
  static async create(input: TrainConfigInput, opts?: CreateOptions): Promise<Trainer>
  static async create(input: Partial<TrainConfigInput>, opts: CreateOptions & { resume: string }): Promise<Trainer>
  static async create(input: Partial<TrainConfigInput>, opts: CreateOptions = {}): Promise<Trainer> {
    // A resumed run's options are checked against its stored ones instead (open-run.ts).
    if (opts.resume === undefined) checkMethodOptions(input as TrainConfigInput)
    const kind = {
      config: trainConfigSchema,
      state: (c: TrainConfig) => METHODS[c.method].state,
      stored: storedTrainConfig,
      movingReference: (c: TrainConfig) => METHODS[c.method].reference === 'moving',
    }
    const run = await openRunOnRanks<TrainConfig, BetaState>(kind, input, opts)
    // The schema checked the config against this method's own options: its load reads them.
    const load = METHODS[run.config.method].load as (run: Run<TrainConfig, BetaState>) => Promise<PreferenceMethod>
    const trainer = new Trainer(run, await load(run))
    applyStepFractions(trainer.config, trainer.state.totalSteps)
    return trainer
  }

  /** The model being trained. */
  get policy(): CausalLM {
    return this.method.model
  }
  /** The frozen reference (TR-DPO: the one that follows the policy); undefined for a reference-free method. */
  get reference(): CausalLM | undefined {
    return this.method.reference
  }
  /** The β the method trains with now (ε-DPO: the global β after the last step; β-DPO: the last step's batch β). */
  get beta(): number {
    return this.method.currentBeta
  }
  get data(): PreferenceData {
    return this.method.data
  }
}

export type SftTrainerEvents = TrainerEvents<{ kind: 'sft' }>

export class SftTrainer extends Engine<SftConfig, SftExample, SftMethod> {
  /** A new run from its config, or (opts.resume) a stored run continued, `input` holding only what changes. */
  static async create(input: SftConfigInput, opts?: CreateOptions): Promise<SftTrainer>
  static async create(input: Partial<SftConfigInput>, opts: CreateOptions & { resume: string }): Promise<SftTrainer>
  static async create(input: Partial<SftConfigInput>, opts: CreateOptions = {}): Promise<SftTrainer> {
    const run = await openRunOnRanks<SftConfig, { kind: 'sft' }>(
      { config: sftConfigSchema, state: () => SFT.state, what: 'an edpo sft checkpoint' },
      input,
      opts,
    )
    const trainer = new SftTrainer(run, await SFT.load(run))
    applyStepFractions(trainer.config, trainer.state.totalSteps)
    return trainer
  }

  get model(): CausalLM {
    return this.method.model
  }
  get data(): SftData {
    return this.method.data
  }
}

/** One host read of several [rows, columns] float64 tensors: a row-major view per tensor. */
function readBack(stats: readonly Tensor[]): Float64Array[] {
  if (stats.length === 0) return []
  const all = Tensor.cat(stats)
  const host = all.toArray() as Float64Array
  all.dispose()
  let offset = 0
  return stats.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1)
    s.dispose()
    offset += n
    return host.subarray(offset - n, offset)
  })
}

export type { CreateOptions } from './open-run'
