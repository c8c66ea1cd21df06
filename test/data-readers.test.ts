// Readers: JSONL, JSON arrays and Parquet, with file:line origins; globs over several files.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'
import { parquetWriteBuffer } from 'hyparquet-writer'

import { EdpoInputError, data } from '../lib/index'
import { tempDir } from './helpers/data-fixtures'

t.test('JSONL: one row per non-blank line, numbered from 1; a bad line is kept as an error row', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'a.jsonl')
  fs.writeFileSync(file, '{"prompt":"p1","chosen":"c","rejected":"r"}\n\n{"prompt": "p2", oops}\n{"prompt":"p3"}\n')
  const rows = await data.readFile(file)
  t.same(
    rows.map((r) => r.source),
    [`${file}:1`, `${file}:3`, `${file}:4`],
  )
  t.same(rows[0]!.value, { prompt: 'p1', chosen: 'c', rejected: 'r' })
  t.match(rows[1]!.error, /^malformed JSON/)
  t.equal(rows[1]!.value, undefined)
  t.same(rows[2]!.value, { prompt: 'p3' })
})

t.test('JSONL: a byte-order mark and CRLF line ends are fine', async (t) => {
  const file = path.join(tempDir(t), 'crlf.jsonl')
  fs.writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"x": "é"}\r\n\r\n{"x": 2}\r\n')]))
  t.same(
    (await data.readFile(file)).map((r) => [r.source, r.value]),
    [
      [`${file}:1`, { x: 'é' }],
      [`${file}:3`, { x: 2 }],
    ],
  )
})

t.test('JSON array: each element gets the line it starts on; a malformed element does not hide the rest', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'b.json')
  fs.writeFileSync(
    file,
    '[\n  {"prompt": "a, [b]", "chosen": "c\\"}", "rejected": "r"},\n  {"prompt": oops},\n\n  {"prompt": "x",\n   "chosen": "y", "rejected": "z"}\n]\n',
  )
  const rows = await data.readFile(file)
  t.same(
    rows.map((r) => r.source),
    [`${file}:2`, `${file}:3`, `${file}:5`],
  )
  t.same(rows[0]!.value, { prompt: 'a, [b]', chosen: 'c"}', rejected: 'r' })
  t.match(rows[1]!.error, /^malformed JSON/)
  t.same(rows[2]!.value, { prompt: 'x', chosen: 'y', rejected: 'z' })
  t.same(data.readJsonText('e.json', ' [ ] '), [], 'an empty array has no rows')
  t.match(data.readJsonText('u.json', '[{"a": 1},\n{"b": 2}')[1], { source: 'u.json:2', error: /not closed/ })
})

t.test('a .json file holding one object per line reads as JSONL (like datasets)', async (t) => {
  const file = path.join(tempDir(t), 'lines.json')
  fs.writeFileSync(file, '{"x": 1}\n{"x": 2}\n')
  t.same(
    (await data.readFile(file)).map((r) => [r.source, r.value]),
    [
      [`${file}:1`, { x: 1 }],
      [`${file}:2`, { x: 2 }],
    ],
  )
})

t.test('Parquet: string columns and nested message lists, origin "file:row N"', async (t) => {
  const file = path.join(tempDir(t), 'pairs.parquet')
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'prompt', data: [[{ role: 'user', content: 'hello' }], [{ role: 'user', content: 'how are you ?' }]] },
      { name: 'chosen', data: [[{ role: 'assistant', content: 'fine' }], [{ role: 'assistant', content: 'good' }]] },
      { name: 'rejected', data: ['bad', 'bad !'] },
    ],
  })
  fs.writeFileSync(file, Buffer.from(buf))
  const rows = await data.readFile(file)
  t.same(
    rows.map((r) => r.source),
    [`${file}:row 1`, `${file}:row 2`],
  )
  t.same(rows[1]!.value, { prompt: [{ role: 'user', content: 'how are you ?' }], chosen: [{ role: 'assistant', content: 'good' }], rejected: 'bad !' })
  const broken = path.join(path.dirname(file), 'broken.parquet')
  fs.writeFileSync(broken, 'not parquet at all')
  await t.rejects(data.readFile(broken), { name: 'EdpoInputError', message: /broken\.parquet: not a readable Parquet file/ })
})

t.test('globs expand to sorted files; plain paths must exist; unknown extensions are refused', async (t) => {
  const dir = tempDir(t)
  fs.mkdirSync(path.join(dir, 'sub', 'deep'), { recursive: true })
  for (const f of ['b.jsonl', 'a.jsonl', 'c.json', 'sub/d.jsonl', 'sub/deep/e.jsonl', 'notes.txt']) fs.writeFileSync(path.join(dir, f), '')
  t.same(data.expandPaths([path.join(dir, '*.jsonl')]), [path.join(dir, 'a.jsonl'), path.join(dir, 'b.jsonl')])
  t.same(
    data.expandPaths([path.join(dir, '**/*.jsonl')]).map((f) => path.relative(dir, f)),
    ['a.jsonl', 'b.jsonl', 'sub/d.jsonl', 'sub/deep/e.jsonl'],
  )
  t.same(
    data.expandPaths([path.join(dir, '[ab].json*'), path.join(dir, 'c.json')]).map((f) => path.basename(f)),
    ['a.jsonl', 'b.jsonl', 'c.json'],
  )
  t.throws(() => data.expandPaths([path.join(dir, '*.parquet')]), new EdpoInputError(`data: ${path.join(dir, '*.parquet')}: no file matches`))
  t.throws(
    () => data.expandPaths([path.join(dir, 'missing.jsonl')], 'evalData'),
    new EdpoInputError(`evalData: ${path.join(dir, 'missing.jsonl')}: no such file`),
  )
  await t.rejects(data.readFile(path.join(dir, 'notes.txt')), { message: /notes\.txt: unknown data format '\.txt'/ })
  const twoFiles = [path.join(dir, 'a.jsonl'), path.join(dir, 'c.json')]
  fs.writeFileSync(twoFiles[0]!, '{"n": 1}\n')
  fs.writeFileSync(twoFiles[1]!, '[{"n": 2}]')
  t.same(
    (await data.readFiles(twoFiles)).map((r) => r.value),
    [{ n: 1 }, { n: 2 }],
    'files are read in order',
  )
})
