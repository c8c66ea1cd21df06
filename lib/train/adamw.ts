// AdamW over named parameters, as torch.optim.AdamW, with fp32 master weights and moments for
// bf16/fp16 parameters. The update itself runs natively on the thread pool.
import { z } from 'zod'

import { EdpoInputError, native } from '../core/errors'
import { readSafetensorsHeader, readSafetensorsInBatches } from '../io'
import { nativeAddon } from '../core/native'
import { adamwStep, type AdamwStepArgs, adamwStepAsync } from '../core/ops'
import { Tensor } from '../core/tensor'
import { formatZodError } from '../core/validate'

export interface AdamWOptions {
  /** Default (0.9, 0.999), as PyTorch. */
  betas?: [number, number]
  eps?: number
  weightDecay?: number
}

const optionsSchema = z
  .object({
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).optional(),
    eps: z.number().positive().optional(),
    weightDecay: z.number().min(0).optional(),
  })
  .strict()

const REDUCED = new Set(['bfloat16', 'float16'])

export class AdamW {
  readonly names: string[]
  private readonly params: Tensor[]
  private readonly master: (Tensor | undefined)[]
  private readonly expAvg: Tensor[]
  private readonly expAvgSq: Tensor[]
  private readonly beta1: number
  private readonly beta2: number
  private readonly eps: number
  private readonly weightDecay: number
  /** Optimizer steps taken so far. */
  stepCount = 0

  constructor(params: Iterable<[string, Tensor]>, options: AdamWOptions = {}) {
    const r = optionsSchema.safeParse(options)
    if (!r.success) throw new EdpoInputError(formatZodError(r.error, 'adamw'))
    ;[this.beta1, this.beta2] = r.data.betas ?? [0.9, 0.999]
    this.eps = r.data.eps ?? 1e-8
    this.weightDecay = r.data.weightDecay ?? 0
    this.names = []
    this.params = []
    this.master = []
    this.expAvg = []
    this.expAvgSq = []
    for (const [name, p] of params) {
      const reduced = REDUCED.has(p.dtype)
      const master = reduced ? p.to('float32') : undefined
      const stateDtype = reduced ? 'float32' : p.dtype
      this.names.push(name)
      this.params.push(p)
      this.master.push(master)
      this.expAvg.push(Tensor.zeros(p.shape, { dtype: stateDtype, device: p.device }))
      this.expAvgSq.push(Tensor.zeros(p.shape, { dtype: stateDtype, device: p.device }))
    }
  }

  private args(lr: number): AdamwStepArgs {
    return {
      params: this.params,
      master: this.master.map((m) => m ?? null),
      expAvg: this.expAvg,
      expAvgSq: this.expAvgSq,
      step: this.stepCount,
      lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
    }
  }

  /** One step at learning rate `lr` over every parameter with a gradient. */
  async step(lr: number): Promise<void> {
    this.stepCount += 1
    await adamwStepAsync(this.args(lr))
  }

  stepSync(lr: number): void {
    this.stepCount += 1
    adamwStep(this.args(lr))
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad()
  }

  /** Global L2 norm of the gradients; scales them to `maxNorm` when above it (0: no clipping). */
  clipGradNorm(maxNorm: number): number {
    return native(() =>
      nativeAddon().clipGradNorm(
        this.params.map((p) => p.handle),
        maxNorm,
      ),
    )
  }

  /** Frees the state (moments, fp32 masters) and drops the parameters' handles; the optimizer cannot step afterwards. */
  dispose(): void {
    for (const t of [...this.expAvg, ...this.expAvgSq, ...this.master, ...this.params]) t?.dispose()
  }

  /** The optimizer state as named tensors (for a safetensors checkpoint). */
  stateTensors(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {}
    this.names.forEach((name, i) => {
      out[`exp_avg.${name}`] = this.expAvg[i]!
      out[`exp_avg_sq.${name}`] = this.expAvgSq[i]!
      const m = this.master[i]
      if (m) out[`master.${name}`] = m
    })
    return out
  }

  /** Restores what stateTensors() saved, copying into the existing state (same names and shapes). */
  loadState(tensors: Record<string, Tensor>, stepCount: number): void {
    const slots = this.stateTensors()
    for (const key of Object.keys(slots)) if (!Object.hasOwn(tensors, key)) throw new EdpoInputError(`optimizer state: missing tensor '${key}'`)
    for (const [key, into] of Object.entries(slots)) copyState(key, tensors[key]!, into)
    this.stepCount = stepCount
  }

  /**
   * loadState from safetensors files (a checkpoint's optimizer.safetensors, or the ZeRO shards that
   * hold this optimizer's parameters), read a batch at a time and copied into the state: the files'
   * contents never sit in memory beside the state. Each file gives the entries it holds.
   */
  loadStateFiles(files: readonly string[], stepCount: number): void {
    const slots = this.stateTensors()
    const where = files.map((file) => ({ file, names: Object.keys(readSafetensorsHeader(file).tensors).filter((k) => Object.hasOwn(slots, k)) }))
    for (const key of Object.keys(slots))
      if (!where.some((w) => w.names.includes(key))) throw new EdpoInputError(`${files.join(', ')}: optimizer state: missing tensor '${key}'`)
    for (const { file, names } of where) {
      if (names.length === 0) continue
      readSafetensorsInBatches(
        file,
        (batch) => {
          for (const [key, t] of Object.entries(batch)) {
            try {
              copyState(key, t, slots[key]!)
            } finally {
              t.dispose()
            }
          }
        },
        { names },
      )
    }
    this.stepCount = stepCount
  }
}

function copyState(key: string, t: Tensor, into: Tensor): void {
  if (t.shape.join(',') !== into.shape.join(',')) throw new EdpoInputError(`optimizer state: '${key}' has shape [${t.shape}], expected [${into.shape}]`)
  into.copyInPlace(t).dispose()
}
