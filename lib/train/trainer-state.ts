// trainer_state.json in each checkpoint: everything besides weights and optimizer tensors that a
// resumed run needs to continue exactly (step, β, data order) and the config it ran with.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import type { SamplerState } from '../data'
import { EdpoInputError } from '../errors'
import { formatZodError } from '../validate'
import type { TrainConfig } from './config'
import type { Metrics } from './metrics-log'

/** Live progress of a Trainer (trainer.state). */
export class TrainerState {
  metrics: Metrics = {}
  constructor(
    public step: number,
    public totalSteps: number,
    public beta: number,
    public epoch: number,
  ) {}
}

export interface TrainerStateFile {
  step: number
  totalSteps: number
  beta: number
  epoch: number
  sampler: SamplerState
  config: TrainConfig
}

const fileSchema = z.object({
  step: z.number().int().min(0),
  totalSteps: z.number().int().min(0),
  beta: z.number().positive(),
  epoch: z.number().min(0),
  sampler: z.object({ epoch: z.number().int().min(0), position: z.number().int().min(0), seed: z.number().int() }),
  config: z.record(z.string(), z.unknown()),
})

export function writeTrainerState(dir: string, state: TrainerStateFile): void {
  fs.writeFileSync(path.join(dir, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n')
}

/** trainer_state.json of checkpoint folder `dir` (see openRunToResume for which one). */
export function readTrainerState(dir: string): { dir: string; file: TrainerStateFile } {
  const file = path.join(dir, 'trainer_state.json')
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot read (${(e as Error).message})`)
  }
  const r = fileSchema.safeParse(raw)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, file))
  return { dir, file: r.data as unknown as TrainerStateFile }
}
