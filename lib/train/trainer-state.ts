// trainer_state.json in each checkpoint: everything besides weights and optimizer tensors that a
// resumed run needs to continue exactly (step, data order, the method's own state such as β) and
// the config it ran with. The engine writes the common fields; each method adds its own.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import type { SamplerState } from '../data'
import { EdpoInputError } from '../core/errors'
import { formatZodError } from '../core/validate'
import type { RunConfig } from './run-options'
import { type Metrics, readMetrics } from './metrics-log'

/** Live progress of a Trainer (trainer.state); `method` is the method's own state (e.g. ε-DPO's {beta}), as its checkpoint saves it. */
export class TrainerState<S extends object = Record<string, unknown>> {
  metrics: Metrics = {}
  constructor(
    public step: number,
    public totalSteps: number,
    public epoch: number,
    public method: S,
  ) {}
}

/** The fields every checkpoint's trainer_state.json has, whatever the method. */
export interface SavedState<C = unknown> {
  step: number
  totalSteps: number
  epoch: number
  sampler: SamplerState
  config: C
}

const savedStateSchema = z.object({
  step: z.number().int().min(0),
  totalSteps: z.number().int().min(0),
  epoch: z.number().min(0),
  sampler: z.object({ epoch: z.number().int().min(0), position: z.number().int().min(0), seed: z.number().int() }),
  config: z.record(z.string(), z.unknown()),
})

export function writeTrainerState(dir: string, state: SavedState & Record<string, unknown>): void {
  fs.writeFileSync(path.join(dir, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n')
}

/**
 * trainer_state.json of checkpoint folder `dir` (see openRunToResume for which one), checked
 * against the common fields plus `method`'s own (e.g. {beta} or {kind: 'sft'}); `what` names the
 * kind of checkpoint in errors. The config is validated by the caller against its own schema.
 */
export function readTrainerState<S extends z.ZodRawShape>(
  dir: string,
  method: S,
  what?: string,
): { dir: string; file: SavedState<Record<string, unknown>> & z.infer<z.ZodObject<S>> } {
  const file = path.join(dir, 'trainer_state.json')
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`)
  }
  const r = savedStateSchema.extend(method).safeParse(raw)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, what ? `${file} (${what})` : file))
  return { dir, file: r.data as SavedState<Record<string, unknown>> & z.infer<z.ZodObject<S>> }
}

/**
 * The fields of Hugging Face's trainer_state.json, so its tooling (log_history plots, step and
 * epoch readers) reads an edpo checkpoint; edpo's own fields sit beside them. log_history is
 * metrics.jsonl up to this step, in order.
 */
export function hfTrainerStateFields(step: number, totalSteps: number, epoch: number, c: RunConfig): Record<string, unknown> {
  return {
    global_step: step,
    max_steps: totalSteps,
    epoch,
    num_train_epochs: c.epochs,
    logging_steps: c.logEvery,
    eval_steps: c.evalEvery,
    save_steps: c.saveEvery,
    train_batch_size: c.batchSize,
    best_metric: null,
    best_model_checkpoint: null,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: readMetricsUpTo(c.out, step),
  }
}

function readMetricsUpTo(runDir: string, step: number): Metrics[] {
  if (!fs.existsSync(path.join(runDir, 'metrics.jsonl'))) return []
  return readMetrics(runDir).filter((e) => e.step <= step)
}
