// What `edpo plan` says one bench:step run holds on its device: planMemory with the options
// lib/cli/plan-command.ts builds from its flags, for one device without ZeRO, the bench's method
// (the trainer's default) and the batch as the bench writes it (every row prompt + completion, unpadded).
import * as path from 'node:path'

import { parseModelConfig } from '../lib/model'
import { readConfigJson } from '../lib/model/checkpoint-files'
import type { LinearModule } from '../lib/model/lora'
import { type MemoryPlan, type PlanOptions, planMemory } from '../lib/model/memory-plan'
import { DEFAULT_TRAIN_METHOD, methodPlanShape } from '../lib/train/methods'

export interface StepRun {
  dtype: 'float32' | 'bfloat16'
  device: string
  pairs: number
  prompt: number
  completion: number
  loraR?: number
  loraTargetModules?: readonly LinearModule[]
  gradientCheckpointing: boolean
  /** The trainer's chunkTokens when the run sets one (EDPO_BENCH_STEP_CONFIG), else its default. */
  chunkTokens?: number
}

/** The plan of `run` for the model folder `dir` (its config.json only). */
export function planStep(dir: string, run: StepRun): MemoryPlan {
  const config = parseModelConfig(readConfigJson(dir), path.join(dir, 'config.json'))
  const method = methodPlanShape(DEFAULT_TRAIN_METHOD)
  const options: PlanOptions = {
    dtype: run.dtype,
    loraR: run.loraR,
    loraTargetModules: run.loraTargetModules,
    batchSize: run.pairs,
    maxLength: run.prompt + run.completion,
    ...method,
    gradientCheckpointing: run.gradientCheckpointing,
    chunkTokens: run.chunkTokens ?? 0,
    maxPromptLength: run.prompt,
    nprocPerNode: 1,
    zeroStage: 0,
    device: run.device === 'cpu' ? 'cpu' : 'cuda',
    // The bench compares tensor bytes (the allocator's peak), not a process's RSS: no runtime term.
    runtimeBytes: 0,
  }
  return planMemory(config, options)
}
