// A tiny model directory for the data tests: a word-level tokenizer.json (one token per word or
// punctuation mark, so worked examples can be counted by eye) with special tokens, and a
// tokenizer_config.json with a small ChatML-like chat template.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const WORDS = [
  '<pad>',
  '<s>',
  '</s>',
  '<|user|>',
  '<|assistant|>',
  '<|system|>',
  '<|end|>',
  'hello',
  'world',
  'how',
  'are',
  'you',
  'fine',
  'bad',
  'good',
  'thanks',
  'i',
  'am',
  'the',
  'cat',
  'dog',
  'sat',
  'ran',
  'Human',
  'Assistant',
  '?',
  '!',
  '.',
  ',',
  ':',
  '[UNK]',
] as const

/** Token id of a word of the fixture vocabulary. */
export function id(word: (typeof WORDS)[number]): number {
  return WORDS.indexOf(word)
}

/** Ids of a space-separated string of fixture words. */
export function ids(text: string): number[] {
  return text
    .split(' ')
    .filter((w) => w !== '')
    .map((w) => {
      const i = WORDS.indexOf(w as (typeof WORDS)[number])
      if (i < 0) throw new Error(`fixture: '${w}' is not in the vocabulary`)
      return i
    })
}

export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' }}\n{{ m['content'] }}<|end|>\n{% endfor %}" +
  '{% if add_generation_prompt %}<|assistant|>\n{% endif %}'

const special = (i: number, content: string) => ({ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })

export function tokenizerJson(): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: WORDS.slice(0, 7).map((w, i) => special(i, w)),
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), unk_token: '[UNK]' },
  }
}

export function tokenizerConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    bos_token: '<s>',
    // transformers also writes special tokens as AddedToken objects.
    eos_token: { content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false, __type: 'AddedToken' },
    pad_token: '<pad>',
    chat_template: CHAT_TEMPLATE,
    ...extra,
  }
}

/** A temp directory holding tokenizer.json and tokenizer_config.json; removed at teardown. */
export function makeModelDir(t: { teardown(fn: () => void): void }, config = tokenizerConfig()): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-data-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()))
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config))
  return dir
}

export function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-data-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function writeJsonl(file: string, rows: readonly unknown[]): string {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
  return file
}
