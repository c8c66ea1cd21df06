// docs/data.md's example runs as written, on small files laid out as it names them.
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as vm from 'node:vm'

import t from 'tap'
import * as ts from 'typescript'
import { parquetWriteBuffer } from 'hyparquet-writer'

import * as edpo from '../lib/index'
import { makeModelDir, tempDir, writeJsonl } from './helpers/data-fixtures'

t.test('docs/data.md example of data.loadPreferenceData', async (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'docs', 'data.md'), 'utf8')
  const code = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  t.ok(code, 'found the example')
  const dir = tempDir(t)
  fs.mkdirSync(path.join(dir, 'prefs'))
  fs.mkdirSync(path.join(dir, 'models'))
  fs.renameSync(makeModelDir(t), path.join(dir, 'models', 'my-sft'))
  const words = ['hello', 'world', 'how', 'are', 'you', 'fine', 'good', 'thanks', 'cat', 'dog']
  writeJsonl(
    path.join(dir, 'prefs', 'a.jsonl'),
    words.map((w) => ({ prompt: w, chosen: 'good', rejected: 'bad' })),
  )
  writeJsonl(
    path.join(dir, 'prefs', 'b.jsonl'),
    words.map((w) => ({ prompt: [{ role: 'user', content: w }], chosen: 'fine', rejected: 'bad' })),
  )
  fs.writeFileSync(
    path.join(dir, 'more.parquet'),
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'prompt', data: ['the cat sat'] },
          { name: 'chosen', data: ['good'] },
          { name: 'rejected', data: ['bad'] },
        ],
      }),
    ),
  )
  const js = ts.transpileModule(`${code!.replace(/^import .*\n/m, '')}\nreturn { train, held, batch, sampler }`, {
    compilerOptions: { target: ts.ScriptTarget.ES2022 },
  }).outputText
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => process.chdir(cwd))
  const run = vm.runInNewContext(`(async () => {\n${js}\n})()`, { data: edpo.data }) as Promise<{
    train: unknown[]
    held: unknown[]
    batch: edpo.data.Batch
    sampler: edpo.data.PairSampler
  }>
  const out = await run
  t.equal(out.train.length + out.held.length, 21)
  t.equal(out.held.length, 1)
  t.equal(out.batch.pairs, 8)
  t.same(out.batch.inputIds.shape, [16, out.batch.length])
  t.same(out.sampler.state(), { epoch: 0, position: 8, seed: 42 })
})
