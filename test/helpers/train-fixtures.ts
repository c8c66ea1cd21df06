// A tiny trainable setup for trainer tests: a random llama whose vocabulary is the data fixtures'
// word-level tokenizer (both in one model folder), and a learnable toy preference set where the
// chosen answer always says "good" and the rejected one "bad".
import * as fs from 'node:fs'
import * as path from 'node:path'

import { makeModelDir, WORDS, writeJsonl } from './data-fixtures'
import { tinyConfig, tinyWeights, writeTiny } from './tiny-models'

export function makeTrainableModel(t: { teardown(fn: () => void): void }, seed = 1): string {
  const dir = makeModelDir(t)
  const config = tinyConfig('llama', { vocab_size: WORDS.length, hidden_size: 32, intermediate_size: 48, bos_token_id: 1, eos_token_id: 2 })
  writeTiny(dir, config, tinyWeights(config, seed))
  return dir
}

const PROMPTS = [
  'how are you ?',
  'hello world !',
  'the cat sat .',
  'the dog ran .',
  'are you fine ?',
  'hello , how are you ?',
  'the cat ran !',
  'i am the dog .',
]
const GOOD = ['i am good .', 'good , thanks !', 'good !', 'the cat is good .'.replace(' is', ''), 'fine , good .', 'good thanks .', 'am good', 'good good .']
const BAD = ['i am bad .', 'bad , thanks !', 'bad !', 'the cat bad .', 'fine , bad .', 'bad thanks .', 'am bad', 'bad bad .']

/** `n` standard-format rows (8 prompts × 8 answer styles, cycled) in a JSONL file. */
export function writeToyPreferences(dir: string, n: number, name = 'prefs.jsonl'): string {
  const rows = Array.from({ length: n }, (_, i) => ({
    prompt: PROMPTS[i % PROMPTS.length]!,
    chosen: GOOD[Math.floor(i / PROMPTS.length) % GOOD.length]!,
    rejected: BAD[Math.floor(i / PROMPTS.length) % BAD.length]!,
  }))
  fs.mkdirSync(dir, { recursive: true })
  return writeJsonl(path.join(dir, name), rows)
}

/**
 * `n` rows of lowercase words, prompts of `promptWords` and answers of `answerWords` words (one
 * token each), so that with max length < promptWords + answerWords every sequence is truncated to
 * exactly that length (memory measurements of a known shape).
 */
export function writeLongPreferences(file: string, n: number, promptWords: number, answerWords: number): string {
  const words = WORDS.filter((x) => /^[a-z]+$/.test(x))
  const text = (seed: number, k: number) => Array.from({ length: k }, (_, i) => words[(seed * 31 + i * 7) % words.length]).join(' ')
  return writeJsonl(
    file,
    Array.from({ length: n }, (_, i) => ({ prompt: text(i, promptWords), chosen: text(i + 1, answerWords), rejected: text(i + 2, answerWords) })),
  )
}
