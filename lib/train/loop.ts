// The outer loop both trainers share (ε-DPO/DPO/TR-DPO and SFT): step, log, evaluate, checkpoint,
// until the last step or an abort; it always ends with an evaluation and a checkpoint of the last
// step. What a step is belongs to each trainer.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { saveSafetensors } from '../io'
import type { CausalLM } from '../model'
import type { AdamW } from './adamw'
import type { CheckpointManager } from './checkpoints'
import type { Metrics, MetricsLog } from './metrics-log'
import type { TrainerState } from './trainer-state'

// Tokenizer and chat-template files copied next to each checkpoint, so it is a usable model folder.
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']

export interface LoopHost {
  readonly config: { logEvery: number; evalEvery: number; saveEvery: number }
  readonly state: TrainerState
  readonly checkpoints: CheckpointManager
  readonly metricsLog: MetricsLog
  trainStep(): Promise<Metrics>
  /** Metrics on the eval split, or undefined when there is none. */
  evaluate(): Promise<Metrics | undefined>
  saveCheckpoint(): Promise<string>
  onLog(entry: Metrics & { step: number }): void
  onStep(state: TrainerState): void
  onEval(entry: Metrics & { step: number }): void
}

async function evaluateAndLog(host: LoopHost): Promise<void> {
  const metrics = await host.evaluate()
  if (!metrics) return
  const entry = { step: host.state.step, ...metrics }
  host.metricsLog.write(entry)
  host.onEval(entry)
}

/** The parts of a checkpoint every trainer writes: the HF model folder with the tokenizer files of
 *  `modelDir` beside it, and the optimizer state. */
export async function writeModelCheckpoint(dir: string, model: CausalLM, modelDir: string, optimizer: AdamW): Promise<void> {
  await model.save(dir)
  for (const f of TOKENIZER_FILES) {
    const src = path.join(modelDir, f)
    if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dir, f))
  }
  saveSafetensors(path.join(dir, 'optimizer.safetensors'), optimizer.stateTensors())
}

export async function runTrainingLoop(host: LoopHost, signal?: AbortSignal): Promise<TrainerState> {
  const { config: c, state } = host
  while (state.step < state.totalSteps && !signal?.aborted) {
    const metrics = await host.trainStep()
    const step = state.step
    if (step % c.logEvery === 0 || step === state.totalSteps) {
      host.metricsLog.write({ step, ...metrics })
      host.onLog({ step, ...metrics })
    }
    host.onStep(state)
    if (c.evalEvery > 0 && step % c.evalEvery === 0 && step < state.totalSteps) await evaluateAndLog(host)
    if (c.saveEvery > 0 && step % c.saveEvery === 0 && step < state.totalSteps) await host.saveCheckpoint()
  }
  if (state.step === state.totalSteps) await evaluateAndLog(host)
  if (host.checkpoints.latest()?.step !== state.step) await host.saveCheckpoint()
  return state
}
