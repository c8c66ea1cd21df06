// Evaluation with a programmatic gold judge, the stand-in for the paper's PairRM: sample a
// completion per prompt from the policy and from the reference, score both with the judge, and
// report the policy's win rate, mean gold reward and the sequence-level KL(π‖π_ref) estimated from
// its own samples, mean over y ~ π of log π(y|x) − log π_ref(y|x).
// A judge is any module that exports `reward(prompt, completion) → number` (or a default function).
import * as fs from 'node:fs'
import * as path from 'node:path'

import { collateSequences, expandPaths, type PreferenceTokenizer, readFiles } from '../data'
import { EdpoInputError } from '../core/errors'
import type { CausalLM } from '../model'
import { Tensor } from '../core/tensor'
import { modelSequenceStats } from './sequence-logps'

export type GoldReward = (prompt: string, completion: string) => number | Promise<number>

export interface GoldJudge {
  /** Where it came from (a module path), for reports. */
  name: string
  reward: GoldReward
}

// tsc (module commonjs) would turn `import()` into require(), which cannot load ES modules.
const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>

function pickReward(mod: unknown): GoldReward | undefined {
  const m = mod as { reward?: unknown; default?: unknown } | undefined
  if (typeof m === 'function') return m as GoldReward
  if (typeof m?.reward === 'function') return m.reward as GoldReward
  if (typeof m?.default === 'function') return m.default as GoldReward
  const d = m?.default as { reward?: unknown } | undefined
  if (typeof d?.reward === 'function') return d.reward as GoldReward
  return undefined
}

/** Loads a judge module (CommonJS or ES module, a path relative to the working folder). */
export async function loadGoldJudge(modulePath: string): Promise<GoldJudge> {
  const file = path.resolve(modulePath)
  if (!fs.existsSync(file)) throw new EdpoInputError(`--gold ${modulePath}: no such file`)
  let mod: unknown
  try {
    mod = file.endsWith('.mjs') ? await dynamicImport(new URL(`file://${file}`).href) : require(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM')
      throw new EdpoInputError(`--gold ${modulePath}: cannot load (${(e as Error).message})`, { cause: e })
    mod = await dynamicImport(new URL(`file://${file}`).href)
  }
  const reward = pickReward(mod)
  if (!reward) throw new EdpoInputError(`--gold ${modulePath}: expected the module to export reward(prompt, completion) or a default function`)
  return { name: modulePath, reward }
}

export interface SampleOptions {
  temperature?: number
  maxNewTokens: number
  seed: number
  batchSize?: number
  device?: string
}

export interface Sample {
  prompt: string
  promptIds: Int32Array
  /** Generated tokens, EOS included when the model wrote it. */
  completionIds: Int32Array
  /** The decoded completion, without EOS. */
  text: string
}

/**
 * One completion per prompt. Prompts are grouped by token length so no row needs padding, and each
 * group's chunks draw from their own seed, so the result depends only on the prompts and the seed.
 */
export async function sampleCompletions(model: CausalLM, tokenizer: PreferenceTokenizer, prompts: readonly string[], o: SampleOptions): Promise<Sample[]> {
  const encoded = prompts.map((p) => Int32Array.from(tokenizer.encode(p)))
  const byLength = new Map<number, number[]>()
  encoded.forEach((ids, i) => {
    if (ids.length === 0) throw new EdpoInputError(`prompt ${i + 1}: has no tokens`)
    byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), i])
  })
  const out = new Array<Sample>(prompts.length)
  const batchSize = o.batchSize ?? 64
  for (const [len, members] of [...byLength].sort((a, b) => a[0] - b[0])) {
    for (let start = 0; start < members.length; start += batchSize) {
      const chunk = members.slice(start, start + batchSize)
      const ids = new BigInt64Array(chunk.length * len)
      chunk.forEach((i, r) => encoded[i]!.forEach((t, j) => (ids[r * len + j] = BigInt(t))))
      const generated = await model.generateAsync(Tensor.from(ids, [chunk.length, len], { device: o.device }), {
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature ?? 1,
        seed: o.seed + len * 100_003 + start,
        eosTokenId: tokenizer.eosTokenId,
      })
      const all = generated.to('cpu').toArray() as BigInt64Array
      const width = generated.shape[1]!
      chunk.forEach((i, r) => {
        const row = Array.from(all.subarray(r * width + len, (r + 1) * width), Number)
        const eos = row.indexOf(tokenizer.eosTokenId)
        const completion = eos < 0 ? row : row.slice(0, eos + 1)
        const textIds = eos < 0 ? completion : completion.slice(0, -1)
        out[i] = {
          prompt: prompts[i]!,
          promptIds: encoded[i]!,
          completionIds: Int32Array.from(completion),
          // The tokenizer's decode refuses an empty list: an immediate EOS is the empty answer.
          text: textIds.length === 0 ? '' : tokenizer.decode(textIds),
        }
      })
      generated.dispose()
    }
  }
  return out
}

/** log π(y|x) − log π_ref(y|x) per sample, summed over its completion tokens. */
export async function sampleLogRatios(
  policy: CausalLM,
  reference: CausalLM,
  samples: readonly Sample[],
  padTokenId: number,
  o: { batchSize?: number; device?: string } = {},
): Promise<Float64Array> {
  const out = new Float64Array(samples.length)
  const batchSize = o.batchSize ?? 64
  for (let start = 0; start < samples.length; start += batchSize) {
    const rows = samples.slice(start, start + batchSize).map((s) => ({ prompt: s.promptIds, completion: s.completionIds }))
    const batch = collateSequences(rows, padTokenId, { device: o.device })
    const s = await modelSequenceStats(policy, batch, { reference })
    const sp = s.logps.toArray() as Float64Array
    const sr = s.referenceLogps!.toArray() as Float64Array
    for (let i = 0; i < rows.length; i++) out[start + i] = sp[i]! - sr[i]!
    for (const t of [s.logps, s.correct, s.tokenCount, s.referenceLogps!, s.kl!]) t.dispose()
  }
  return out
}

export interface GoldEvalOptions extends SampleOptions {
  policy: CausalLM
  reference: CausalLM
  tokenizer: PreferenceTokenizer
  prompts: readonly string[]
  judge: GoldJudge
  /** The reference's samples and rewards for the same prompts, when several policies share them. */
  referenceSamples?: { samples: Sample[]; rewards: number[] }
}

export interface GoldEval {
  prompts: number
  /** Share of prompts where the policy's sample scores higher than the reference's (ties count ½). */
  winRate: number
  meanReward: number
  referenceMeanReward: number
  /** Mean over the policy's samples of log π(y|x) − log π_ref(y|x) (nats per sequence). */
  kl: number
  /** Mean completion length in tokens (EOS included). */
  meanLength: number
  samples: { prompt: string; policy: string; reference: string; policyReward: number; referenceReward: number }[]
}

export async function scoreSamples(judge: GoldJudge, samples: readonly Sample[]): Promise<number[]> {
  const out: number[] = []
  for (const s of samples) {
    const r = await judge.reward(s.prompt, s.text)
    if (typeof r !== 'number' || !Number.isFinite(r))
      throw new EdpoInputError(`${judge.name}: reward(${JSON.stringify(s.prompt)}, ${JSON.stringify(s.text)}) returned ${String(r)}, expected a finite number`)
    out.push(r)
  }
  return out
}

/** Win rate against the reference, mean gold reward and sampled KL of `policy` on `prompts`. */
export async function evaluateWithGold(o: GoldEvalOptions): Promise<GoldEval> {
  if (o.prompts.length === 0) throw new EdpoInputError('gold evaluation: no prompts')
  const ref = o.referenceSamples ?? (await referenceSamplesFor(o))
  const samples = await sampleCompletions(o.policy, o.tokenizer, o.prompts, o)
  const rewards = await scoreSamples(o.judge, samples)
  const ratios = await sampleLogRatios(o.policy, o.reference, samples, o.tokenizer.padTokenId, o)
  let wins = 0
  for (let i = 0; i < samples.length; i++) wins += rewards[i]! > ref.rewards[i]! ? 1 : rewards[i] === ref.rewards[i] ? 0.5 : 0
  const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length
  return {
    prompts: samples.length,
    winRate: wins / samples.length,
    meanReward: mean(rewards),
    referenceMeanReward: mean(ref.rewards),
    kl: mean(ratios),
    meanLength: mean(samples.map((s) => s.completionIds.length)),
    samples: samples.map((s, i) => ({
      prompt: s.prompt,
      policy: s.text,
      reference: ref.samples[i]!.text,
      policyReward: rewards[i]!,
      referenceReward: ref.rewards[i]!,
    })),
  }
}

/** The reference's samples (same prompts and seed as the policies') and their gold rewards. */
export async function referenceSamplesFor(o: Omit<GoldEvalOptions, 'policy' | 'referenceSamples'>): Promise<{ samples: Sample[]; rewards: number[] }> {
  // A different seed stream from the policies', so a policy equal to the reference is not a copy of its samples.
  const samples = await sampleCompletions(o.reference, o.tokenizer, o.prompts, { ...o, seed: o.seed + 7_919 })
  return { samples, rewards: await scoreSamples(o.judge, samples) }
}

/** Prompts from JSONL / JSON / Parquet rows with a string `prompt` field (files or globs). */
export async function readPrompts(patterns: readonly string[]): Promise<string[]> {
  const rows = await readFiles(expandPaths([...patterns], 'prompts'))
  return rows.map((row) => {
    const prompt = (row.value as { prompt?: unknown } | undefined)?.prompt
    if (row.error !== undefined) throw new EdpoInputError(`${row.source}: ${row.error}`)
    if (typeof prompt !== 'string' || prompt === '') throw new EdpoInputError(`${row.source}: prompt: expected a non-empty string`)
    return prompt
  })
}
