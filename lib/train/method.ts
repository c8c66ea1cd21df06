// What a training method plugs into the engine (lib/train/engine.ts). The contract, in short: a
// micro-batch in, a loss and a per-example record out (both left on the device); the step's
// records read back once become its metrics; a hook after each optimizer step; the method's own
// trainer_state.json fields and checkpoint files. The engine owns everything else (sampler,
// accumulation, clipping, AdamW, schedule, logging, evaluation, checkpoints, resume).
// A method is one file in methods/ that exports a MethodSpec (its options, its state, whether it
// runs a reference, how it loads), listed once in methods/index.ts; the preference methods build
// on methods/preference.ts, so each is its loss and little else.
import type { z } from 'zod'

import type { CausalLM } from '../model'
import type { Tensor } from '../core/tensor'
import type { Metrics } from './metrics-log'
import type { Run } from './open-run'
import type { OptionTable, OptionValues } from './option-table'
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

/** Where this rank's rows sit in a global micro-batch split over ranks (lib/distributed/data-parallel.ts). */
export interface BatchShare<Row = unknown> {
  /** Rows of each rank, rank 0's first. */
  counts: readonly number[]
  rank: number
  /** This rank has no rows: it runs one global row, weighted 0, only to join the collectives. */
  standIn: boolean
  /** The global micro-batch, every rank's rows in rank order (KTO pairs a prompt with its global neighbour's completions). */
  rows: readonly Row[]
}

/** How the engine runs a micro-batch. */
export interface MicroBatchOptions<Row = unknown> {
  /** Training (with grad) or evaluation. */
  grad: boolean
  /**
   * In a profiled step (--profile-steps): called as each part ends ('batch', 'policy forward', …),
   * it ends that section of the step's profile; the engine's own lap after the call is 'loss'.
   */
  lap?: (section: string) => void
  /** On several ranks: the global micro-batch's split. */
  share?: BatchShare<Row>
}

export interface TrainingMethod<Row, S extends object = Record<string, unknown>> {
  /** The model the optimizer trains and each checkpoint saves. */
  readonly model: CausalLM
  /** A frozen model the loss also runs (the preference methods' reference): counted in the memory
   *  report. Absent for reference-free methods (SFT; SimPO-like losses). */
  readonly reference?: CausalLM
  readonly train: readonly Row[]
  readonly eval: readonly Row[] | undefined
  /** Tokens `row` puts in a batch row before padding (what --group-by-length groups by). */
  rowLength(row: Row): number
  /** Loss and per-example statistics of `rows` (collated on the run's device); reads nothing back. */
  microBatch(rows: readonly Row[], o: MicroBatchOptions<Row>): Promise<MicroBatchOutput>
  /**
   * On several ranks, the loss takes a collective over them in every micro-batch (β-DPO's batch
   * statistics are the global micro-batch's): every rank runs every micro-batch, a rank without
   * rows on a stand-in row (MicroBatchOptions.share.standIn).
   */
  readonly collectiveLoss?: boolean
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
  afterStep?(state: TrainerState<S>): Metrics
  /**
   * Models a checkpoint keeps beside the policy, each in its sub-folder (TR-DPO's moving reference
   * in reference/). The engine writes them, so that at ZeRO-3 a sharded model is gathered unit by
   * unit on every rank like the policy.
   */
  savedModels?(): readonly (readonly [subdir: string, model: CausalLM])[]
  /** The method's own trainer_state.json fields (β, kind), validated on resume by its spec's `state`. */
  savedState(): S
}

/** Where a checkpoint of a method whose reference moves keeps that reference. */
export const REFERENCE_DIR = 'reference'

/** How a method uses a reference model: none (reference-free), a frozen one, or one that moves and each checkpoint saves (reference/). */
export type ReferenceUse = 'none' | 'frozen' | 'moving'

/** A method as the registry (methods/index.ts) lists it. */
export interface MethodSpec<C = unknown, Row = unknown, O extends OptionTable = OptionTable, S extends z.ZodRawShape = z.ZodRawShape> {
  /** How reports and plots name it (ε-DPO). */
  title: string
  /** One line for --help. */
  about: string
  /** What one training example is: a preference pair (two rows; `edpo train --method`) or one sequence (`edpo sft`). */
  data: 'pairs' | 'sequences'
  reference: ReferenceUse
  /**
   * Its loss is the fused ε-DPO op, which makes the lm_head's and the hidden states' gradients in
   * its forward and keeps them until the backward (edpo plan counts them with the activations).
   */
  headGradientInForward?: boolean
  /** The options only this method reads (an error with any other method). */
  options: O
  /** Its trainer_state.json fields, checked on resume. */
  state: S
  /** Why the method cannot train LoRA adapters, where it cannot. */
  withoutLora?: string
  load(run: Run<C & OptionValues<O>, z.infer<z.ZodObject<S>>>): Promise<TrainingMethod<Row, z.infer<z.ZodObject<S>>>>
}
