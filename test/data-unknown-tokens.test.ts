// Words outside a word-level vocabulary become the unknown token; the loaders count them and warn
// once per split with the count and the first row (file:line). An unknown token the text writes
// itself (an added token such as <unk>) is not counted.
import * as path from 'node:path'

import t from 'tap'

import { data } from '../lib/index'
import { makeModelDir, tempDir, tokenizerConfig, tokenizerJson, writeJsonl } from './helpers/data-fixtures'

t.test('preference data: a warning with the count and an example row', async (t) => {
  const dir = tempDir(t)
  const file = writeJsonl(path.join(dir, 'prefs.jsonl'), [
    { prompt: 'hello', chosen: 'fine', rejected: 'bad' },
    { prompt: 'hello zebra', chosen: 'fine', rejected: 'bad giraffe okapi' },
    { prompt: 'hello', chosen: 'fine yak', rejected: 'bad' },
  ])
  const lines: string[] = []
  const out = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), log: (l) => lines.push(l) })
  t.same(out.report.train.unknownTokens, { tokens: 4, rows: 2, example: `${file}:2` })
  const warnings = lines.filter((l) => l.startsWith('warning:'))
  t.same(warnings, [
    `warning: train: 4 tokens in 2 rows are not in the tokenizer's vocabulary and became [UNK] (first in ${file}:2); check that the model folder's tokenizer is the one this data was written for`,
  ])
})

t.test('no unknown words: no warning', async (t) => {
  const file = writeJsonl(path.join(tempDir(t), 'p.jsonl'), [{ prompt: 'hello', chosen: 'fine', rejected: 'bad' }])
  const lines: string[] = []
  const out = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), log: (l) => lines.push(l) })
  t.same(out.report.train.unknownTokens, { tokens: 0, rows: 0 })
  t.same(
    lines.filter((l) => l.startsWith('warning:')),
    [],
  )
})

t.test('an unknown token written literally in the text is not counted', (t) => {
  const json = tokenizerJson() as { added_tokens: Record<string, unknown>[] }
  // [UNK] as an added special token (as most real tokenizers have their <unk>): matched whole.
  json.added_tokens.push({ id: 30, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  const tok = data.createTokenizer(json, tokenizerConfig())
  const text = 'hello [UNK] zebra'
  const ids = tok.encode(text)
  t.equal(ids.filter((i) => i === 30).length, 2, 'both are the unknown id')
  t.equal(tok.countUnknown!(text, ids), 1, 'only zebra is counted')
  t.equal(tok.unkToken, '[UNK]')
  t.end()
})

t.test('SFT data warns the same way', async (t) => {
  const file = writeJsonl(path.join(tempDir(t), 'sft.jsonl'), [
    { prompt: 'hello', completion: 'world' },
    { prompt: 'hello', completion: 'wombat' },
  ])
  const lines: string[] = []
  await data.loadSftData({ data: [file], tokenizer: makeModelDir(t), log: (l) => lines.push(l) })
  t.same(
    lines.filter((l) => l.startsWith('warning:')),
    [
      `warning: data: 1 token in 1 row is not in the tokenizer's vocabulary and became [UNK] (first in ${file}:2); check that the model folder's tokenizer is the one this data was written for`,
    ],
  )
})
