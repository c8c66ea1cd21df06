// loadPreferenceData end to end: several files and formats, validation that stops the run or
// skips and counts, the truncation report, and the evaluation split.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'
import { parquetWriteBuffer } from 'hyparquet-writer'

import { EdpoInputError, data } from '../lib/index'
import { ids, makeModelDir, tempDir, tokenizerConfig, writeJsonl } from './helpers/data-fixtures'

const user = (content: string) => ({ role: 'user', content })
const assistant = (content: string) => ({ role: 'assistant', content })

t.test('three formats in three file types, read through a glob', async (t) => {
  const model = makeModelDir(t)
  const dir = tempDir(t)
  writeJsonl(path.join(dir, 'a.jsonl'), [{ prompt: 'how are you ?', chosen: 'fine', rejected: 'bad' }])
  fs.writeFileSync(
    path.join(dir, 'b.json'),
    JSON.stringify([{ prompt: [user('hello')], chosen: [assistant('hello !')], rejected: [assistant('bad')] }], null, 2),
  )
  fs.writeFileSync(
    path.join(dir, 'c.parquet'),
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'chosen', data: ['Human: how are you ? Assistant: good thanks'] },
          { name: 'rejected', data: ['Human: how are you ? Assistant: bad'] },
        ],
      }),
    ),
  )
  const lines: string[] = []
  const out = await data.loadPreferenceData({ data: path.join(dir, '*'), tokenizer: model, log: (l) => lines.push(l) })
  t.same(
    out.train.map((p) => [p.source, Array.from(p.prompt), Array.from(p.chosen), Array.from(p.rejected)]),
    [
      [`${path.join(dir, 'a.jsonl')}:1`, ids('how are you ?'), ids('fine </s>'), ids('bad </s>')],
      [`${path.join(dir, 'b.json')}:2`, ids('<s> <|user|> hello <|end|> <|assistant|>'), ids('hello ! <|end|> </s>'), ids('bad <|end|> </s>')],
      [`${path.join(dir, 'c.parquet')}:row 1`, ids('Human : how are you ? Assistant :'), ids('good thanks </s>'), ids('bad </s>')],
    ],
  )
  t.equal(out.eval, undefined)
  t.equal(out.tokenizer.eosTokenId, ids('</s>')[0])
  t.same(out.report.train, {
    files: ['a.jsonl', 'b.json', 'c.parquet'].map((f) => path.join(dir, f)),
    rows: 3,
    pairs: 3,
    skipped: {},
    invalid: [],
    droppedPromptTooLong: 0,
    truncated: 0,
    unknownTokens: { tokens: 0, rows: 0 },
  })
  t.same(lines, ['train: 3 rows from 3 files → 3 pairs'])
})

function badFile(dir: string): string {
  const file = path.join(dir, 'bad.jsonl')
  fs.writeFileSync(
    file,
    [
      JSON.stringify({ prompt: 'hello', chosen: 'fine', rejected: 'bad' }),
      '{"prompt": "hello", "chosen": "fine",',
      JSON.stringify({ prompt: 'hello', rejected: 'bad' }),
      JSON.stringify({ prompt: 'hello', chosen: '', rejected: 'bad' }),
      JSON.stringify({ prompt: 'hello', chosen: ['fine'], rejected: 'bad' }),
      JSON.stringify({ prompt: 'hello', chosen: 'same', rejected: 'same' }),
      JSON.stringify({ prompt: 'the cat', chosen: 'sat', rejected: 'ran' }),
    ].join('\n'),
  )
  return file
}

t.test('invalid rows stop the run, each named by file:line and field', async (t) => {
  const file = badFile(tempDir(t))
  const err = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), log: () => {} }).catch((e: unknown) => e)
  t.type(err, EdpoInputError)
  const lines = (err as Error).message.split('\n')
  t.equal(lines[0], 'data: 5 invalid rows (pass skipInvalid / --skip-invalid to skip and count them):')
  t.match(lines[1], new RegExp(`^${file}:2: malformed JSON \\(`))
  t.same(lines.slice(2), [
    `${file}:3: chosen: missing`,
    `${file}:4: chosen: empty`,
    `${file}:5: chosen: expected a string, got array`,
    `${file}:6: rejected: identical to chosen`,
  ])
})

t.test('skipInvalid skips, counts by reason and prints the summary; nothing is silent', async (t) => {
  const file = badFile(tempDir(t))
  const lines: string[] = []
  const out = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), skipInvalid: true, log: (l) => lines.push(l) })
  t.same(
    out.train.map((p) => p.source),
    [`${file}:1`, `${file}:7`],
  )
  t.same(out.report.train.skipped, { 'malformed JSON': 1, 'missing field': 1, 'empty field': 1, 'wrong type': 1, 'chosen identical to rejected': 1 })
  t.same(
    out.report.train.invalid.map((i) => [i.source, i.reason, i.field]),
    [
      [`${file}:2`, 'malformed JSON', ''],
      [`${file}:3`, 'missing field', 'chosen'],
      [`${file}:4`, 'empty field', 'chosen'],
      [`${file}:5`, 'wrong type', 'chosen'],
      [`${file}:6`, 'chosen identical to rejected', 'rejected'],
    ],
  )
  t.same(lines.slice(0, 1), [
    'train: 7 rows from 1 file → 2 pairs; skipped 5 invalid (1 malformed JSON, 1 missing field, 1 empty field, 1 wrong type, 1 chosen identical to rejected)',
  ])
  t.match(lines[1], new RegExp(`^  skipped ${file}:2: malformed JSON`))
  t.same(lines.slice(2), [`  skipped ${file}:3: chosen: missing`, `  skipped ${file}:4: chosen: empty`, '  ... 2 more in report.invalid'])
})

t.test('more than ten bad rows: the first ten in full, then a count', async (t) => {
  const file = writeJsonl(
    path.join(tempDir(t), 'many.jsonl'),
    Array.from({ length: 13 }, () => ({ prompt: 'p' })),
  )
  const err = (await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t) }).catch((e: unknown) => e)) as Error
  const lines = err.message.split('\n')
  t.equal(lines.length, 12)
  t.equal(lines[1], `${file}:1: chosen: missing`)
  t.equal(lines[11], '... and 3 more')
  const none = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), skipInvalid: true, log: () => {} }).catch((e: unknown) => e)
  t.match(none, { name: 'EdpoInputError', message: /^data: no pairs left \(data: 13 rows from 1 file → 0 pairs; skipped 13 invalid \(13 missing field\)\)$/ })
})

t.test('truncation report: prompts that fill maxLength are dropped and counted, cut rows counted', async (t) => {
  const file = writeJsonl(path.join(tempDir(t), 'len.jsonl'), [
    { prompt: 'hello', chosen: 'fine', rejected: 'bad' }, // 1 + 2: fits
    { prompt: 'the cat sat , the dog ran .', chosen: 'fine', rejected: 'bad' }, // prompt 8 ≥ 6: dropped
    { prompt: 'how are you ?', chosen: 'i am fine thanks', rejected: 'bad' }, // 4 + 5: cut to 4 + 2
  ])
  const lines: string[] = []
  const out = await data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), maxLength: 6, log: (l) => lines.push(l) })
  t.same(
    out.train.map((p) => Array.from(p.chosen)),
    [ids('fine </s>'), ids('i am')],
  )
  t.match(out.report.train, { rows: 3, pairs: 2, droppedPromptTooLong: 1, truncated: 1 })
  t.same(lines, ['train: 3 rows from 1 file → 2 pairs; dropped 1 whose prompt alone fills maxLength 6; truncated 1'])
})

t.test('evaluation split: evalData files, or a seeded evalFraction held out from data', async (t) => {
  const dir = tempDir(t)
  const model = makeModelDir(t)
  const words = ['hello', 'world', 'how', 'are', 'you', 'fine', 'good', 'thanks', 'cat', 'dog']
  const file = writeJsonl(
    path.join(dir, 'train.jsonl'),
    words.map((w) => ({ prompt: w, chosen: 'good', rejected: 'bad' })),
  )
  const evalFile = writeJsonl(path.join(dir, 'eval.jsonl'), [{ prompt: 'hello', chosen: 'fine', rejected: 'bad' }])
  const lines: string[] = []
  const withFile = await data.loadPreferenceData({ data: file, evalData: [evalFile], tokenizer: model, log: (l) => lines.push(l) })
  t.equal(withFile.train.length, 10)
  t.same(
    withFile.eval!.map((p) => p.source),
    [`${evalFile}:1`],
  )
  t.same(lines, ['train: 10 rows from 1 file → 10 pairs', 'eval: 1 row from 1 file → 1 pair'])

  const split = (seed: number) => data.loadPreferenceData({ data: file, evalFraction: 0.3, seed, tokenizer: model, log: () => {} })
  const a = await split(1)
  t.equal(a.train.length, 7)
  t.equal(a.eval!.length, 3)
  const sources = (ps: data.TokenizedPair[]) => ps.map((p) => p.source)
  t.same([...sources(a.train), ...sources(a.eval!)].sort(), Array.from({ length: 10 }, (_, i) => `${file}:${i + 1}`).sort(), 'disjoint and complete')
  t.same(sources((await split(1)).eval!), sources(a.eval!), 'same seed, same split')
  t.same(
    sources(a.train),
    [...sources(a.train)].sort((x, y) => Number(x.split(':').pop()) - Number(y.split(':').pop())),
    'file order kept',
  )
  t.same(a.report.eval, {
    files: [file],
    rows: 3,
    pairs: 3,
    skipped: {},
    invalid: [],
    droppedPromptTooLong: 0,
    truncated: 0,
    unknownTokens: { tokens: 0, rows: 0 },
  })
  t.equal(a.report.train.pairs, 7)
})

t.test('bad options, and conversational rows without a chat template', async (t) => {
  const file = writeJsonl(path.join(tempDir(t), 'chat.jsonl'), [{ prompt: [user('hello')], chosen: 'fine', rejected: 'bad' }])
  const model = makeModelDir(t)
  await t.rejects(data.loadPreferenceData({ data: file, tokenizer: model, maxLength: 0 }), {
    name: 'EdpoInputError',
    message: /^loadPreferenceData\.maxLength: /,
  })
  await t.rejects(
    data.loadPreferenceData({ data: file, evalData: file, evalFraction: 0.1, tokenizer: model }),
    new EdpoInputError('loadPreferenceData.evalFraction: give evalData or evalFraction, not both'),
  )
  await t.rejects(data.loadPreferenceData({ data: file, evalFraction: 1.5, tokenizer: model }), { message: /^loadPreferenceData\.evalFraction: / })
  await t.rejects(
    data.loadPreferenceData({ data: file, evalFraction: 0.1, tokenizer: model, log: () => {} }),
    new EdpoInputError('loadPreferenceData.evalFraction: 0.1 of 1 pairs leaves an empty split'),
  )
  await t.rejects(data.loadPreferenceData({ data: [], tokenizer: model }), { message: /^loadPreferenceData\.data: / })
  const plain = makeModelDir(t, tokenizerConfig({ chat_template: undefined }))
  await t.rejects(
    data.loadPreferenceData({ data: file, tokenizer: plain }),
    new EdpoInputError(`${file}:1: the row is conversational but the tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)`),
  )
})
