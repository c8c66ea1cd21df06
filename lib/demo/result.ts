// What `edpo demo` produces (pipeline.ts) and reports (report.ts): the types both read.
import type { GoldEval } from '../eval/gold'
import type { Metrics } from '../train/metrics-log'
import type { TrainMethod } from '../train/methods'
import type { DemoConfig } from './config'

export type Method = TrainMethod

export interface MethodResult {
  method: Method | 'reference'
  gold: Omit<GoldEval, 'samples'>
  /** Held-out labelled pairs: share where the implicit reward prefers the gold-chosen completion. */
  preferenceAccuracy: number | undefined
  finalBeta: number | undefined
  steps: number
  runDir: string
}

export interface DemoResult {
  config: DemoConfig
  judge: string
  data: { trainPairs: number; ties: number; empty: number; heldOutPairs: number }
  results: MethodResult[]
  /** Per-step training metrics of each method (for plots and the β trajectory). */
  curves: Record<string, (Metrics & { step: number })[]>
  files: { report: string; results: string; plots: string[] }
  seconds: Record<string, number>
}
