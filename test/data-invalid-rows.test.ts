// --skip-invalid's full list: every skipped row (split, file:line, field, reason, message) in the
// invalidRowsFile (the trainers pass <out>/invalid-rows.jsonl), and the summary says where it is.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { data } from '../lib/index'
import { makeModelDir, tempDir, writeJsonl } from './helpers/data-fixtures'

const good = { prompt: 'hello', chosen: 'fine', rejected: 'bad' }

t.test('preference data: all skipped rows in the file, not only the first three', async (t) => {
  const dir = tempDir(t)
  const file = writeJsonl(path.join(dir, 'prefs.jsonl'), [good, ...Array.from({ length: 18 }, () => ({ prompt: 'hello', rejected: 'bad' }))])
  const evalFile = writeJsonl(path.join(dir, 'eval.jsonl'), [good, { prompt: 'hello', chosen: 'fine', rejected: 7 }])
  const invalidRowsFile = path.join(dir, 'invalid-rows.jsonl')
  const lines: string[] = []
  await data.loadPreferenceData({ data: file, evalData: evalFile, tokenizer: makeModelDir(t), skipInvalid: true, invalidRowsFile, log: (l) => lines.push(l) })
  const rows = fs
    .readFileSync(invalidRowsFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, string>)
  t.equal(rows.length, 19)
  t.same(rows[0], { split: 'train', source: `${file}:2`, field: 'chosen', reason: 'missing field', message: `${file}:2: chosen: missing` })
  t.same(rows[17]!.source, `${file}:19`)
  t.same(rows[18], {
    split: 'eval',
    source: `${evalFile}:2`,
    field: 'rejected',
    reason: 'wrong type',
    message: `${evalFile}:2: rejected: expected a string, got number`,
  })
  t.match(lines[0], new RegExp(`^train: 19 rows .* skipped 18 invalid \\(18 missing field\\); all skipped rows in ${invalidRowsFile}$`))
  t.equal(lines[4], `  ... 15 more in ${invalidRowsFile}`, 'a place the user can open, not report.invalid')
})

t.test('no skipped rows: no file (and a stale one from an earlier start is removed)', async (t) => {
  const dir = tempDir(t)
  const invalidRowsFile = path.join(dir, 'invalid-rows.jsonl')
  fs.writeFileSync(invalidRowsFile, '{}\n')
  await data.loadPreferenceData({
    data: writeJsonl(path.join(dir, 'p.jsonl'), [good]),
    tokenizer: makeModelDir(t),
    skipInvalid: true,
    invalidRowsFile,
    log: () => {},
  })
  t.notOk(fs.existsSync(invalidRowsFile))
})

t.test('all rows invalid: the error says where the list is', async (t) => {
  const dir = tempDir(t)
  const invalidRowsFile = path.join(dir, 'invalid-rows.jsonl')
  const file = writeJsonl(path.join(dir, 'p.jsonl'), [{ prompt: 'x' }, { prompt: 'y' }])
  await t.rejects(data.loadPreferenceData({ data: file, tokenizer: makeModelDir(t), skipInvalid: true, invalidRowsFile, log: () => {} }), {
    message: new RegExp(`no pairs left .*; the skipped rows are listed in ${invalidRowsFile}$`),
  })
  t.equal(fs.readFileSync(invalidRowsFile, 'utf8').trim().split('\n').length, 2)
})

t.test('SFT data: the same file, with the field at fault', async (t) => {
  const dir = tempDir(t)
  const file = writeJsonl(path.join(dir, 'sft.jsonl'), [
    { prompt: 'hello', completion: 'world' },
    { prompt: 3, completion: 'x' },
    { prompt: 'a', completion: '' },
    'text',
  ])
  const invalidRowsFile = path.join(dir, 'invalid-rows.jsonl')
  const lines: string[] = []
  await data.loadSftData({ data: [file], tokenizer: makeModelDir(t), skipInvalid: true, invalidRowsFile, log: (l) => lines.push(l) })
  const rows = fs
    .readFileSync(invalidRowsFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, string>)
  t.same(
    rows.map((r) => [r.source, r.field, r.reason]),
    [
      [`${file}:2`, 'prompt', 'wrong type'],
      [`${file}:3`, 'completion', 'empty field'],
      [`${file}:4`, '', 'not an object'],
    ],
  )
  t.equal(lines[0], `data: 4 rows → 1 examples; skipped 3 invalid (all listed in ${invalidRowsFile})`)
})
