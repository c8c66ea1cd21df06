// The outer loop both trainers share (ε-DPO/DPO/TR-DPO and SFT): step, log, evaluate, checkpoint,
// until the last step or an abort; it always ends with an evaluation and a checkpoint of the last
// step. What a step is belongs to each trainer.
import type { CheckpointManager } from './checkpoints'
import type { Metrics, MetricsLog } from './metrics-log'
import type { TrainerState } from './trainer-state'

export interface LoopHost {
  readonly config: { logEvery: number; evalEvery: number; saveEvery: number }
  readonly state: TrainerState
  readonly checkpoints: CheckpointManager
  readonly metricsLog: MetricsLog
  trainStep(): Promise<Metrics>
  evaluateAndLog(): Promise<void>
  saveCheckpoint(): Promise<string>
  onLog(entry: Metrics & { step: number }): void
  onStep(state: TrainerState): void
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
    if (c.evalEvery > 0 && step % c.evalEvery === 0 && step < state.totalSteps) await host.evaluateAndLog()
    if (c.saveEvery > 0 && step % c.saveEvery === 0 && step < state.totalSteps) await host.saveCheckpoint()
  }
  if (state.step === state.totalSteps) await host.evaluateAndLog()
  if (host.checkpoints.latest()?.step !== state.step) await host.saveCheckpoint()
  return state
}
