// SftTrainer: supervised fine-tuning with a masked-prompt cross-entropy (the mean negative
// log-likelihood of the completion tokens only), on the machinery of the ε-DPO Trainer: the same
// option table, sampler, AdamW, schedule, metrics.jsonl, atomic checkpoints and exact resume.
//   per optimizer step: micro-batches (forward with grad, masked CE, backward) → clip → AdamW →
//   metrics → eval / checkpoint → until maxSteps, an abort signal or an error.
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import { type SamplerState, type SftData, type SftExample, collateSequences, loadSftData, PairSampler } from '../data'
import { EdpoInputError } from '../errors'
import { maskedTokenLogps } from '../eval/sequence-logps'
import { loadSafetensors } from '../io'
import { CausalLM } from '../model'
import type { Tensor } from '../tensor'
import { formatZodError } from '../validate'
import { AdamW } from './adamw'
import { CheckpointManager } from './checkpoints'
import { openRunToResume, prepareNewRun } from './run-folder'
import { type Metrics, MetricsLog } from './metrics-log'
import { lrMultiplier } from './schedule'
import { type SftConfig, type SftConfigInput, sftConfigSchema } from './sft-config'
import { EdpoTrainingError } from './trainer'
import { runTrainingLoop, writeModelCheckpoint } from './loop'
import { TrainerState } from './trainer-state'

export interface SftTrainerEvents {
  log: [Metrics & { step: number }]
  step: [TrainerState]
  eval: [Metrics & { step: number }]
  checkpoint: [string]
}

interface SftStateFile {
  kind: 'sft'
  step: number
  totalSteps: number
  epoch: number
  sampler: SamplerState
  config: SftConfig
}

const stateSchema = z.object({
  kind: z.literal('sft'),
  step: z.number().int().min(0),
  totalSteps: z.number().int().min(0),
  epoch: z.number().min(0),
  sampler: z.object({ epoch: z.number().int().min(0), position: z.number().int().min(0), seed: z.number().int() }),
  config: z.record(z.string(), z.unknown()),
})

function readSftState(dir: string): { dir: string; file: SftStateFile } {
  const file = path.join(dir, 'trainer_state.json')
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`)
  }
  const r = stateSchema.safeParse(raw)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, `${file} (an edpo sft checkpoint)`))
  return { dir, file: r.data as unknown as SftStateFile }
}

/** Mean cross-entropy over completion tokens, and the fraction of them predicted by argmax. */
function maskedCrossEntropy(logits: Tensor, labels: Tensor, lossMask: Tensor, tokens: number): { loss: Tensor; correct: number } {
  const lp = maskedTokenLogps(logits, labels, lossMask)
  const loss = lp.sum().mul(-1 / Math.max(1, tokens))
  const hits = logits.detach().argmax(-1).eq(labels).to('float32').mul(lossMask).sum().item()
  return { loss, correct: hits }
}

export class SftTrainer extends EventEmitter<SftTrainerEvents> {
  readonly state: TrainerState

  private constructor(
    readonly config: SftConfig,
    readonly model: CausalLM,
    readonly data: SftData,
    private readonly optimizer: AdamW,
    private readonly sampler: PairSampler,
    private readonly checkpoints: CheckpointManager,
    private readonly metricsLog: MetricsLog,
    state: TrainerState,
  ) {
    super()
    this.state = state
  }

  static async create(input: SftConfigInput, opts: { resume?: string; log?: (line: string) => void } = {}): Promise<SftTrainer> {
    const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'))
    if (opts.resume !== undefined && input.overwriteOutputDir)
      throw new EdpoInputError(`--resume ${opts.resume} continues a run; --overwrite-output-dir starts over: give one of them`)
    const from = opts.resume !== undefined ? openRunToResume(opts.resume, log) : undefined
    const resumed = from ? readSftState(from.dir) : undefined
    const parsed = sftConfigSchema.safeParse(resumed ? { ...resumed.file.config, out: opts.resume } : input)
    if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'config'))
    const config = parsed.data
    // The folder is checked before the model loads or the data is tokenized (minutes at 8B).
    if (resumed) MetricsLog.truncateAfter(config.out, resumed.file.step, log)
    else prepareNewRun(config.out, config.overwriteOutputDir, log)
    const data = await loadSftData({
      data: config.data,
      evalData: config.evalData,
      evalFraction: config.evalFraction,
      tokenizer: config.model,
      maxLength: config.maxLength,
      maxPromptLength: config.maxPromptLength,
      maxCompletionLength: config.maxCompletionLength,
      truncationMode: config.truncationMode,
      skipInvalid: config.skipInvalid,
      invalidRowsFile: path.join(config.out, 'invalid-rows.jsonl'),
      seed: config.seed,
      log,
    })
    const model = await CausalLM.fromPretrained(resumed ? resumed.dir : config.model, { dtype: config.dtype, device: config.device })
    model.train().setGradientCheckpointing(config.gradientCheckpointing)
    const optimizer = new AdamW(model.namedParameters(), {
      betas: [config.adamBeta1, config.adamBeta2],
      eps: config.adamEpsilon,
      weightDecay: config.weightDecay,
    })
    const sampler = new PairSampler(data.train.length, { batchSize: config.batchSize, seed: config.seed, shuffle: true, state: resumed?.file.sampler })
    const totalSteps = config.maxSteps ?? Math.ceil((config.epochs * sampler.batchesPerEpoch) / config.gradAccumulation)
    if (resumed) {
      optimizer.loadState(loadSafetensors(path.join(resumed.dir, 'optimizer.safetensors')), resumed.file.step)
      log(`resumed from ${resumed.dir} at step ${resumed.file.step}`)
    }
    // β has no meaning here; TrainerState keeps it at 0.
    const state = new TrainerState(resumed?.file.step ?? 0, totalSteps, 0, sampler.currentEpoch)
    return new SftTrainer(config, model, data, optimizer, sampler, new CheckpointManager(config.out, config.keepLast), new MetricsLog(config.out), state)
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

  private async trainStep(): Promise<Metrics> {
    const c = this.config
    const started = performance.now()
    let lossSum = 0
    let tokens = 0
    let correct = 0
    for (let k = 0; k < c.gradAccumulation; k++) {
      const rows = this.sampler.next().indices.map((i) => this.data.train[i]!)
      const batch = collateSequences(rows, this.data.tokenizer.padTokenId, { device: c.device })
      const { logits } = await this.model.forwardAsync(batch.inputIds, { attentionMask: batch.attentionMask, grad: true })
      const out = maskedCrossEntropy(logits, batch.labels, batch.lossMask, batch.tokens)
      const loss = out.loss.item()
      if (!Number.isFinite(loss)) throw this.badState('the loss is not finite')
      await out.loss.mul(1 / c.gradAccumulation).backwardAsync()
      lossSum += loss * batch.tokens
      tokens += batch.tokens
      correct += out.correct
      logits.dispose()
    }
    const gradNorm = this.optimizer.clipGradNorm(c.maxGradNorm)
    if (!Number.isFinite(gradNorm)) throw this.badState(`the gradient norm is ${gradNorm}`)
    const lr = c.learningRate * lrMultiplier(c.lrScheduler, this.state.step, this.state.totalSteps, c.warmupRatio)
    await this.optimizer.step(lr)
    this.optimizer.zeroGrad()
    this.state.step += 1
    const position = this.sampler.state()
    this.state.epoch = position.epoch + position.position / this.data.train.length
    const seconds = (performance.now() - started) / 1000
    this.state.metrics = {
      loss: lossSum / Math.max(1, tokens),
      token_accuracy: correct / Math.max(1, tokens),
      grad_norm: gradNorm,
      learning_rate: lr,
      tokens_per_second: tokens / seconds,
      step_time: seconds,
      epoch: this.state.epoch,
    }
    return this.state.metrics
  }

  /** Token-mean cross-entropy and accuracy on the eval split, or on `examples`. */
  async evaluate(examples: readonly SftExample[] | undefined = this.data.eval): Promise<Metrics | undefined> {
    if (!examples || examples.length === 0) return undefined
    let lossSum = 0
    let tokens = 0
    let correct = 0
    for (let start = 0; start < examples.length; start += this.config.batchSize) {
      const batch = collateSequences(examples.slice(start, start + this.config.batchSize), this.data.tokenizer.padTokenId, { device: this.config.device })
      const { logits } = await this.model.forwardAsync(batch.inputIds, { attentionMask: batch.attentionMask, grad: false })
      const out = maskedCrossEntropy(logits, batch.labels, batch.lossMask, batch.tokens)
      lossSum += out.loss.item() * batch.tokens
      tokens += batch.tokens
      correct += out.correct
      logits.dispose()
    }
    return { eval_loss: lossSum / Math.max(1, tokens), eval_token_accuracy: correct / Math.max(1, tokens) }
  }


  /** Writes checkpoint-<step>: the HF model folder with tokenizer files, optimizer state, trainer_state.json. */
  async saveCheckpoint(): Promise<string> {
    const dir = await this.checkpoints.save(this.state.step, async (dir) => {
      await writeModelCheckpoint(dir, this.model, this.config.model, this.optimizer)
      const file: SftStateFile = { kind: 'sft', step: this.state.step, totalSteps: this.state.totalSteps, epoch: this.state.epoch, sampler: this.sampler.state(), config: this.config }
      fs.writeFileSync(path.join(dir, 'trainer_state.json'), JSON.stringify(file, null, 2) + '\n')
    })
    this.emit('checkpoint', dir)
    return dir
  }

  private badState(what: string): EdpoTrainingError {
    const last = this.checkpoints.latest()
    return new EdpoTrainingError(`step ${this.state.step + 1}: ${what}; stopped. Last checkpoint: ${last ? last.dir : 'none yet'}`)
  }
}
