// `edpo demo` settings: one option table for flags, --help and runDemo(). Sizes default to a
// preset (full or --quick) and any flag overrides its preset value.
import { z } from 'zod'

import { EdpoInputError } from '../core/errors'
import { type OptionSpec, optionsObject } from '../train/config'
import { TRAIN_METHODS, type TrainMethod } from '../train/methods'
import { formatZodError } from '../core/validate'

const count = z.number().int().positive()

export const DEMO_OPTIONS = {
  out: { schema: z.string().min(1).default('runs/demo'), kind: 'string', help: 'output folder (report.md, plots, every run)' },
  quick: { schema: z.boolean().default(false), kind: 'boolean', help: 'a smaller, faster pipeline (the one npm test runs)' },
  seed: { schema: z.number().int().min(0).default(42), kind: 'integer', help: 'seed of data, initial weights, sampling and data order' },
  beta: { schema: z.number().positive().default(0.5), kind: 'number', help: 'β of DPO, TR-DPO and ε-DPO (its initial value); 0.5 suits the toy task' },
  epsilon: { schema: z.number().min(0).lt(1).default(0.01), kind: 'number', help: "ε-DPO's ε (the paper's default)" },
  methods: { schema: z.array(z.enum(TRAIN_METHODS)).min(1).default(['dpo', 'epsilon-dpo', 'tr-dpo']), kind: 'strings', help: 'methods to train (repeatable)' },
  learningRate: { schema: z.number().positive().optional(), kind: 'number', help: 'preference-training learning rate (default: the preset)' },
  epochs: { schema: z.number().positive().optional(), kind: 'number', help: 'preference-training epochs (default: the preset)' },
  sftSteps: { schema: count.optional(), kind: 'integer', help: 'SFT optimizer steps of the reference (default: the preset)' },
  trainPrompts: { schema: count.optional(), kind: 'integer', help: 'prompts sampled twice and labelled for training (default: the preset)' },
  evalPrompts: { schema: count.optional(), kind: 'integer', help: 'held-out prompts for the gold evaluation (default: the preset)' },
  trDpoTau: { schema: count.optional(), kind: 'integer', help: 'TR-DPO: soft reference update every τ steps (default: an eighth of the run)' },
  gold: {
    schema: z.string().min(1).optional(),
    kind: 'string',
    help: 'judge module exporting reward(prompt, completion) (default: the shipped sort-the-digits reward)',
  },
} satisfies Record<string, OptionSpec>

export const demoSchema = optionsObject(DEMO_OPTIONS)

export type DemoInput = z.input<typeof demoSchema>

export interface DemoSizes {
  sftRows: number
  sftSteps: number
  sftBatch: number
  sftLearningRate: number
  trainPrompts: number
  /** Prompts labelled for the held-out preference-accuracy split. */
  heldOutPrompts: number
  evalPrompts: number
  batchSize: number
  learningRate: number
  epochs: number
  hiddenSize: number
  layers: number
  maxNewTokens: number
}

export const PRESETS: Record<'full' | 'quick', DemoSizes> = {
  full: {
    sftRows: 4000,
    sftSteps: 600,
    sftBatch: 32,
    sftLearningRate: 3e-3,
    trainPrompts: 2048,
    heldOutPrompts: 256,
    evalPrompts: 1024,
    batchSize: 16,
    learningRate: 5e-4,
    epochs: 2,
    hiddenSize: 64,
    layers: 2,
    maxNewTokens: 10,
  },
  quick: {
    sftRows: 2000,
    sftSteps: 300,
    sftBatch: 32,
    sftLearningRate: 3e-3,
    trainPrompts: 1024,
    heldOutPrompts: 128,
    evalPrompts: 512,
    batchSize: 16,
    learningRate: 5e-4,
    epochs: 2,
    hiddenSize: 64,
    layers: 2,
    maxNewTokens: 10,
  },
}

export interface DemoConfig extends DemoSizes {
  out: string
  quick: boolean
  seed: number
  beta: number
  epsilon: number
  methods: TrainMethod[]
  trDpoTau: number | undefined
  gold: string | undefined
}

/** Validated settings with the preset's sizes filled in. */
export function demoConfig(input: DemoInput): DemoConfig {
  const r = demoSchema.safeParse(input)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, 'edpo demo'))
  const o = r.data
  const preset = PRESETS[o.quick ? 'quick' : 'full']
  return {
    ...preset,
    out: o.out,
    quick: o.quick,
    seed: o.seed,
    beta: o.beta,
    epsilon: o.epsilon,
    methods: o.methods,
    trDpoTau: o.trDpoTau,
    gold: o.gold,
    learningRate: o.learningRate ?? preset.learningRate,
    epochs: o.epochs ?? preset.epochs,
    sftSteps: o.sftSteps ?? preset.sftSteps,
    trainPrompts: o.trainPrompts ?? preset.trainPrompts,
    evalPrompts: o.evalPrompts ?? preset.evalPrompts,
  }
}
