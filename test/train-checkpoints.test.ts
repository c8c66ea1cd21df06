// Checkpoint folders are written atomically and pruned to the newest K; metrics.jsonl appends and
// truncates for resume.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CheckpointManager } from '../lib/train/checkpoints'
import { MetricsLog, readMetrics } from '../lib/train/metrics-log'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-ckpt-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('save, list, keep the last K', async (t) => {
  const m = new CheckpointManager(path.join(dir, 'run'), 2)
  for (const step of [5, 10, 15]) await m.save(step, async (d) => fs.writeFileSync(path.join(d, 'x.txt'), String(step)))
  t.same(
    m.list().map((c) => c.step),
    [10, 15],
  )
  t.equal(fs.readFileSync(path.join(m.latest()!.dir, 'x.txt'), 'utf8'), '15')
  t.same(
    fs.readdirSync(path.join(dir, 'run')).filter((n) => n.includes('tmp')),
    [],
  )
})

t.test('a failed write leaves no checkpoint and no temporary folder', async (t) => {
  const m = new CheckpointManager(path.join(dir, 'run2'), 3)
  await m.save(1, async (d) => fs.writeFileSync(path.join(d, 'ok'), ''))
  await t.rejects(
    m.save(2, async () => {
      throw new Error('disk full')
    }),
    /disk full/,
  )
  t.same(
    m.list().map((c) => c.step),
    [1],
  )
  t.same(fs.readdirSync(path.join(dir, 'run2')), ['checkpoint-1'])
})

t.test('metrics.jsonl appends and truncates after a step', (t) => {
  const run = path.join(dir, 'run3')
  const log = new MetricsLog(run)
  for (let s = 1; s <= 4; s++) log.write({ step: s, loss: 1 / s })
  MetricsLog.truncateAfter(run, 2)
  t.same(
    readMetrics(run).map((m) => m.step),
    [1, 2],
  )
  t.end()
})
