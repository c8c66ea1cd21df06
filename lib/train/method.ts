// What a training method plugs into the engine (lib/train/engine.ts): its data, the model it
// trains, the loss of one micro-batch, how a step's statistics become metrics, what it does after
// each optimizer step and what it adds to a checkpoint. The engine owns everything else (sampler,
// accumulation, clipping, AdamW, schedule, logging, evaluation, checkpoints, resume), so a new
// method (LoRA, β-DPO) is one file here, never a second loop.
import type { CausalLM } from '../model'
import type { Tensor } from '../core/tensor'
import type { Metrics } from './metrics-log'
import type { TrainerState } from './trainer-state'

/** One micro-batch's result, all on the device: the engine reads nothing of it per micro-batch. */
export interface MicroBatchOutput {
  /** Scalar mean loss of the micro-batch (differentiable when run with grad). */
  loss: Tensor
  /** [rows, columns] float64 per-example statistics, laid out as the method chooses. */
  stats: Tensor
  /** Input tokens processed (a host count, for tokens_per_second). */
  tokens: number
}

/** Metrics of a step or an evaluation pass; `loss` is what the finite-loss check looks at. */
export type StepSummary = Metrics & { loss: number }

export interface TrainingMethod<Row> {
  /** The model the optimizer trains and each checkpoint saves. */
  readonly model: CausalLM
  /** A frozen model the loss also runs (the preference methods' reference): counted in the memory report. */
  readonly reference?: CausalLM
  readonly train: readonly Row[]
  readonly eval: readonly Row[] | undefined
  /** Tokens `row` puts in a batch row before padding (what --group-by-length groups by). */
  rowLength(row: Row): number
  /**
   * Loss and per-example statistics of `rows` (collated on the run's device); reads nothing back.
   * `lap`, in a profiled step (--profile-steps): called as each part ends ('batch', 'policy
   * forward', …), it ends that section of the step's profile; the engine's own lap after the call is 'loss'.
   */
  microBatch(rows: readonly Row[], o: { grad: boolean; lap?: (section: string) => void }): Promise<MicroBatchOutput>
  /**
   * Metrics from the host copy of the micro-batches' stats (one row-major view per micro-batch,
   * read together once per step or evaluation). `training` is false for evaluation, whose metrics
   * never change the method's state (e.g. β accumulates only in training).
   */
  summarize(stats: readonly Float64Array[], training: boolean): StepSummary
  /**
   * What the micro-batch's mean loss divides by (default: its rows; SFT: its completion tokens),
   * from the host rows alone: on several ranks each rank's loss is weighted by its share of the
   * global micro-batch's count, so the ranks together train like one process (lib/distributed/data-parallel.ts).
   */
  lossCount?(rows: readonly Row[]): number
  /** After the optimizer step (state.step is the new step): e.g. β update, reference sync; extra metrics. */
  afterStep?(state: TrainerState): Metrics
  /** Extra files of a checkpoint (TR-DPO's reference/), written into the temporary folder `dir`. */
  saveFiles?(dir: string): Promise<void>
  /** The method's own trainer_state.json fields (β, kind). */
  savedState(): Record<string, unknown>
}
