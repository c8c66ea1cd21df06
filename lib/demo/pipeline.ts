// `edpo demo`: the paper's pipeline at toy scale, on this machine, with no download.
//   1. tokenizer + task   the shipped character-level tokenizer; "sort the digits" prompts
//   2. reference          a small llama trained from scratch with SftTrainer (`edpo sft`)
//   3. preference data    two samples per training prompt from the reference, labelled by the
//                         gold judge (ties dropped), plus a held-out labelled split
//   4. training           DPO, ε-DPO and TR-DPO from the same reference, seed and data
//   5. evaluation         held-out prompts: gold win rate vs the reference's samples, mean gold
//                         reward, sampled KL(π‖π_ref), held-out preference accuracy, ε-DPO's β
//   6. report             report.md, results.json and SVG plots (report.ts)
import * as fs from 'node:fs'
import * as path from 'node:path'

import { z } from 'zod'

import { loadPreferenceData, loadTokenizer, type TokenizedPair } from '../data'
import { evaluatePreferences } from '../eval'
import {
  evaluateWithGold,
  type GoldEvalOptions,
  type GoldJudge,
  loadGoldJudge,
  referenceSamplesFor,
  type Sample,
  sampleCompletions,
  scoreSamples,
} from '../eval/gold'
import { EdpoInputError } from '../core/errors'
import { CausalLM } from '../model'
import { type Metrics, readMetrics } from '../train/metrics-log'
import { METHODS, ownOptions } from '../train/methods'
import { SftTrainer, Trainer } from '../train/engine'
import { type DemoConfig, type DemoInput, demoConfig } from './config'
import { writeRandomLlama } from './init-model'
import { labelPairs } from './labelling'
import { writeReport } from './report'
import type { DemoResult, Method, MethodResult } from './result'
import { demonstrations, makePrompts } from './task'

/** The shipped tokenizer (assets/demo), found from lib/demo or dist/lib/demo. */
export function demoAssets(): string {
  for (const up of ['../..', '../../..']) {
    const dir = path.resolve(__dirname, up, 'assets', 'demo')
    if (fs.existsSync(path.join(dir, 'tokenizer.json'))) return dir
  }
  throw new Error('edpo demo: assets/demo/tokenizer.json is missing from this install')
}

export type { DemoResult, Method, MethodResult } from './result'

export interface DemoHooks {
  /** Progress of a phase: done of total units (steps, prompts), with the latest metrics when training. */
  progress?: (phase: string, done: number, total: number, metrics?: Metrics) => void
  /** Notices (data reports, file paths). */
  log?: (line: string) => void
}

const writeJsonl = (file: string, rows: readonly object[]) => fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')

/** What every method shares: the SFT reference, the labelled data and the reference's eval samples. */
export interface Prepared {
  reference: string
  referenceModel: CausalLM
  judge: GoldJudge
  trainFile: string
  heldOut: TokenizedPair[]
  goldOptions: Omit<GoldEvalOptions, 'policy' | 'referenceSamples'>
  refSamples: { samples: Sample[]; rewards: number[] }
  data: DemoResult['data']
}

class Timer {
  readonly seconds: Record<string, number> = {}
  async time<T>(name: string, f: () => Promise<T>): Promise<T> {
    const t0 = performance.now()
    try {
      return await f()
    } finally {
      this.seconds[name] = (this.seconds[name] ?? 0) + (performance.now() - t0) / 1000
    }
  }
}

// What steps 1-3 leave for a later call with `reuse` (bench/paper caches them per seed).
const PREPARED = 'prepared.json'
const preparedKey = (c: DemoConfig) =>
  JSON.stringify([
    c.seed,
    c.gold ?? null,
    c.sftRows,
    c.sftSteps,
    c.sftBatch,
    c.sftLearningRate,
    c.trainPrompts,
    c.heldOutPrompts,
    c.hiddenSize,
    c.layers,
    c.maxNewTokens,
  ])
const preparedSchema = z.object({ key: z.string(), data: z.object({ trainPairs: z.number(), ties: z.number(), empty: z.number(), heldOutPairs: z.number() }) })

/**
 * Steps 1-3 and the reference's side of step 5, in c.out (which is emptied first). With `reuse`,
 * a folder where an earlier call with the same seed and sizes finished keeps its SFT reference
 * and labelled data, and only the evaluation's reference samples are drawn again.
 */
export async function prepare(c: DemoConfig, hooks: DemoHooks = {}, timer = new Timer(), reuse = false): Promise<Prepared> {
  const log = hooks.log ?? (() => {})
  const progress = hooks.progress ?? (() => {})
  const trainFile = path.join(c.out, 'data', 'prefs-train.jsonl')
  const heldOutFile = path.join(c.out, 'data', 'prefs-heldout.jsonl')
  const referenceDir = path.join(c.out, 'sft', `checkpoint-${c.sftSteps}`)
  const saved =
    reuse && fs.existsSync(path.join(c.out, PREPARED)) ? preparedSchema.safeParse(JSON.parse(fs.readFileSync(path.join(c.out, PREPARED), 'utf8'))) : undefined
  if (saved?.success && saved.data.key === preparedKey(c)) {
    log(`reusing the SFT reference and labelled data in ${c.out}`)
    const judge = await loadGoldJudge(c.gold ?? require.resolve('./gold-reward'))
    if (c.gold === undefined) judge.name = 'the shipped sort-the-digits reward, lib/demo/gold-reward.ts'
    return finishPrepare(c, referenceDir, judge, trainFile, heldOutFile, saved.data.data)
  }
  // Each run starts clean, but only a folder an earlier demo made (it leaves a marker) is emptied.
  const marker = path.join(c.out, '.edpo-demo')
  const ours = fs.existsSync(marker) || fs.existsSync(path.join(c.out, 'data', 'sft.jsonl')) // (or made before the marker existed)
  if (fs.existsSync(c.out) && fs.readdirSync(c.out).length > 0 && !ours)
    throw new EdpoInputError(`--out ${c.out}: the folder is not empty and was not made by edpo demo; choose another`)
  fs.rmSync(c.out, { recursive: true, force: true })
  fs.mkdirSync(path.join(c.out, 'data'), { recursive: true })
  fs.writeFileSync(marker, 'written by edpo demo: this folder is emptied when the demo runs again\n')
  const assets = demoAssets()
  // The shipped judge goes through the same module loading as `edpo eval --gold <module>`.
  const judge = await loadGoldJudge(c.gold ?? require.resolve('./gold-reward'))
  if (c.gold === undefined) judge.name = 'the shipped sort-the-digits reward, lib/demo/gold-reward.ts'
  const sampling = { maxNewTokens: c.maxNewTokens, temperature: 1, batchSize: 128 }

  // 1-2. A llama from scratch, then SFT on imperfect demonstrations: the reference.
  const reference = await timer.time('sft', async () => {
    const init = writeRandomLlama(
      path.join(c.out, 'init'),
      {
        vocabSize: 99,
        hiddenSize: c.hiddenSize,
        intermediateSize: 2 * c.hiddenSize,
        layers: c.layers,
        heads: 4,
        kvHeads: 2,
        maxPositions: 64,
        bosTokenId: 1,
        eosTokenId: 2,
        padTokenId: 0,
      },
      c.seed,
      [path.join(assets, 'tokenizer.json'), path.join(assets, 'tokenizer_config.json')],
    )
    const sftFile = path.join(c.out, 'data', 'sft.jsonl')
    writeJsonl(sftFile, demonstrations(makePrompts(c.sftRows, c.seed + 2), c.seed + 3))
    const sft = await SftTrainer.create(
      {
        model: init,
        data: [sftFile],
        out: path.join(c.out, 'sft'),
        batchSize: c.sftBatch,
        maxSteps: c.sftSteps,
        learningRate: c.sftLearningRate,
        warmupRatio: 0.05,
        seed: c.seed,
        keepLast: 1,
        maxLength: 32,
      },
      { log },
    )
    sft.on('log', (m) => progress('sft', m.step, c.sftSteps, m))
    await sft.train()
    return referenceDir
  })
  const tokenizer = loadTokenizer(reference)
  const referenceModel = (await CausalLM.fromPretrained(reference)).eval()

  // 3. On-policy pairs: two samples per prompt from the reference, labelled by the judge.
  const label = async (prompts: string[], seed: number, file: string, done: number, total: number) => {
    const a = await sampleCompletions(referenceModel, tokenizer, prompts, { ...sampling, seed })
    progress('label', done + prompts.length / 2, total)
    const b = await sampleCompletions(referenceModel, tokenizer, prompts, { ...sampling, seed: seed + 1 })
    const r = labelPairs(
      prompts,
      a.map((s) => s.text),
      b.map((s) => s.text),
      await scoreSamples(judge, a),
      await scoreSamples(judge, b),
    )
    writeJsonl(file, r.pairs)
    progress('label', done + prompts.length, total)
    return r
  }
  const labelTotal = c.trainPrompts + c.heldOutPrompts
  const [train, heldOut] = await timer.time('label', async () => [
    await label(makePrompts(c.trainPrompts, c.seed + 4), c.seed + 5, trainFile, 0, labelTotal),
    await label(makePrompts(c.heldOutPrompts, c.seed + 6), c.seed + 7, heldOutFile, c.trainPrompts, labelTotal),
  ])
  log(
    `preference data: ${train.pairs.length} training pairs (${train.ties} ties and ${train.empty} empty completions dropped), ${heldOut.pairs.length} held-out pairs`,
  )
  const data = { trainPairs: train.pairs.length, ties: train.ties, empty: train.empty, heldOutPairs: heldOut.pairs.length }
  fs.writeFileSync(path.join(c.out, PREPARED), JSON.stringify({ key: preparedKey(c), data }) + '\n')
  return finishPrepare(c, reference, judge, trainFile, heldOutFile, data, referenceModel)
}

/** 5 (shared). The held-out pairs, prompts and the reference's own samples on them. */
async function finishPrepare(
  c: DemoConfig,
  reference: string,
  judge: GoldJudge,
  trainFile: string,
  heldOutFile: string,
  data: DemoResult['data'],
  model?: CausalLM,
): Promise<Prepared> {
  const tokenizer = loadTokenizer(reference)
  const referenceModel = model ?? (await CausalLM.fromPretrained(reference)).eval()
  const held = await loadPreferenceData({ data: heldOutFile, tokenizer, log: () => {} })
  const sampling = { maxNewTokens: c.maxNewTokens, temperature: 1, batchSize: 128 }
  const goldOptions = { reference: referenceModel, tokenizer, prompts: makePrompts(c.evalPrompts, c.seed + 8), judge, ...sampling, seed: c.seed + 9 }
  const refSamples = await referenceSamplesFor(goldOptions)
  return { reference, referenceModel, judge, trainFile, heldOut: held.train, goldOptions, refSamples, data }
}

export interface RunSpec {
  method: Method
  beta: number
  epsilon: number
  /** Run folder. */
  out: string
  /** TR-DPO's reference update (default soft, as the demo). */
  trDpoMode?: 'hard' | 'soft'
  /** ε-DPO's step-decision precision (default fp32). */
  criterionPrecision?: 'fp32' | 'bf16'
  /** Fraction of training pairs with chosen and rejected swapped (default 0). */
  labelNoise?: number
  /** Other method options (e.g. simpoGamma); like β and ε, each goes only to a method that declares it. */
  options?: Readonly<Record<string, number>>
}

/** Steps 4-5 for one method: train from the shared reference, then the gold and preference evaluation. */
export async function trainAndEvaluate(
  p: Prepared,
  c: DemoConfig,
  run: RunSpec,
  hooks: DemoHooks = {},
  timer = new Timer(),
): Promise<{ result: MethodResult; curve: (Metrics & { step: number })[] }> {
  const progress = hooks.progress ?? (() => {})
  const stepsPerEpoch = Math.ceil(p.data.trainPairs / c.batchSize)
  const totalSteps = Math.ceil(stepsPerEpoch * c.epochs)
  const trainer = await timer.time(run.method, async () => {
    const t = await Trainer.create(
      {
        model: p.reference,
        data: [p.trainFile],
        out: run.out,
        method: run.method,
        learningRate: c.learningRate,
        warmupRatio: 0.1,
        batchSize: c.batchSize,
        epochs: c.epochs,
        maxLength: 32,
        seed: c.seed,
        keepLast: 1,
        labelNoise: run.labelNoise ?? 0,
        // Each method gets only its own options (the Trainer rejects the others').
        ...ownOptions(run.method, {
          beta: run.beta,
          epsilon: run.epsilon,
          criterionPrecision: run.criterionPrecision ?? 'fp32',
          trDpoMode: run.trDpoMode ?? 'soft',
          trDpoTau: c.trDpoTau ?? Math.max(1, Math.round(totalSteps / 8)),
          ...run.options,
        }),
      },
      { log: () => {} },
    )
    t.on('log', (m) => progress(run.method, m.step, t.state.totalSteps, m))
    await t.train()
    return t
  })
  const policy = trainer.policy.eval()
  const gold = await timer.time(`${run.method} eval`, () => evaluateWithGold({ ...p.goldOptions, policy, referenceSamples: p.refSamples }))
  // The accuracy is the sign of β·margin, the same for any β > 0: a method without β (RRHF) uses 1.
  const acc = await evaluatePreferences({
    policy,
    reference: p.referenceModel,
    pairs: p.heldOut,
    tokenizer: p.goldOptions.tokenizer,
    beta: run.beta > 0 ? run.beta : 1,
    batchSize: 32,
  })
  const { samples, ...summary } = gold
  writeJsonl(path.join(run.out, 'samples.jsonl'), samples)
  const curve = readMetrics(run.out).filter((m) => 'loss' in m)
  // The β the method ended with (β-DPO's is per batch: its last step's); none for a method without β (RRHF).
  const finalBeta = Object.hasOwn(METHODS[run.method].options, 'beta') ? trainer.beta : undefined
  return {
    result: { method: run.method, gold: summary, preferenceAccuracy: acc.accuracy, finalBeta, steps: trainer.state.step, runDir: run.out },
    curve,
  }
}

/** The reference against itself (another sampling seed): the 50% and zero-KL baseline row. */
export async function referenceRow(p: Prepared, c: DemoConfig): Promise<MethodResult> {
  const { samples: _, ...summary } = await evaluateWithGold({ ...p.goldOptions, policy: p.referenceModel, referenceSamples: p.refSamples })
  return { method: 'reference', gold: summary, preferenceAccuracy: undefined, finalBeta: undefined, steps: c.sftSteps, runDir: p.reference }
}

export async function runDemo(input: DemoInput, hooks: DemoHooks = {}): Promise<DemoResult> {
  const c = demoConfig(input)
  const progress = hooks.progress ?? (() => {})
  const timer = new Timer()
  const p = await prepare(c, hooks, timer)
  // 4-5. Each method from the same reference, seed and data; then its evaluation.
  const results: MethodResult[] = []
  const curves: DemoResult['curves'] = {}
  for (const method of c.methods) {
    const { result, curve } = await trainAndEvaluate(p, c, { method, beta: c.beta, epsilon: c.epsilon, out: path.join(c.out, method) }, hooks, timer)
    results.push(result)
    curves[method] = curve
    progress('eval', results.length, c.methods.length + 1)
  }
  results.unshift(await referenceRow(p, c))
  progress('eval', c.methods.length + 1, c.methods.length + 1)
  const partial = { config: c, judge: p.judge.name, data: p.data, results, curves, seconds: timer.seconds }
  const files = await timer.time('report', () => writeReport(c.out, partial))
  return { ...partial, files }
}
