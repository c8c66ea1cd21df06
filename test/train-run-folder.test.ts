// The run folder stays trustworthy: a new run refuses an earlier run's folder (or replaces only its
// content with overwriteOutputDir), checkpoints are complete or not listed, pruning never leaves a
// partial checkpoint, leftovers of a kill are removed on resume, metrics.jsonl survives a torn last
// line, and a corrupt newest checkpoint falls back to the previous complete one.
import * as fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import * as path from 'node:path'

import t from 'tap'

import { CheckpointManager, COMPLETE_MARKER, checkpointProblem } from '../lib/train/checkpoints'
import { MetricsLog, readMetrics } from '../lib/train/metrics-log'
import { openRunToResume, prepareNewRun } from '../lib/train/run-folder'
import { tempDir } from './helpers/data-fixtures'

// The mutable fs module object, to simulate a kill inside fs.rmSync.
const nodeFs = require('node:fs') as typeof fs

// The smallest valid safetensors file: an empty header, no tensors.
const EMPTY_SAFETENSORS = Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')])

/** What a trainer writes into a checkpoint, in miniature. */
async function writeFake(m: CheckpointManager, step: number): Promise<string> {
  return m.save(step, async (d) => {
    fs.writeFileSync(path.join(d, 'config.json'), '{}')
    fs.writeFileSync(path.join(d, 'model.safetensors'), EMPTY_SAFETENSORS)
    fs.writeFileSync(path.join(d, 'optimizer.safetensors'), EMPTY_SAFETENSORS)
    fs.writeFileSync(path.join(d, 'trainer_state.json'), JSON.stringify({ step }))
  })
}

t.test('a new run refuses a non-empty folder, naming --resume and --overwrite-output-dir', (t) => {
  const out = path.join(tempDir(t), 'run')
  prepareNewRun(out, false, () => {})
  t.ok(fs.statSync(out).isDirectory(), 'created')
  prepareNewRun(out, false, () => {}) // still empty: fine
  fs.writeFileSync(path.join(out, 'metrics.jsonl'), '{"step":1}\n')
  t.throws(() => prepareNewRun(out, false, () => {}), {
    name: 'EdpoInputError',
    message: new RegExp(`^--out ${out}: the folder is not empty \\(metrics.jsonl\\).*--resume ${out}.*--overwrite-output-dir`),
  })
  t.end()
})

t.test('overwriteOutputDir removes only what an edpo run wrote', async (t) => {
  const out = path.join(tempDir(t), 'run')
  const m = new CheckpointManager(out, 5)
  await writeFake(m, 1)
  fs.writeFileSync(path.join(out, 'metrics.jsonl'), '{"step":1}\n')
  fs.writeFileSync(path.join(out, 'invalid-rows.jsonl'), '{}\n')
  fs.mkdirSync(path.join(out, '.checkpoint-2.tmp-99'))
  fs.writeFileSync(path.join(out, 'notes.txt'), 'mine')
  const lines: string[] = []
  prepareNewRun(out, true, (l) => lines.push(l))
  t.same(fs.readdirSync(out), ['notes.txt'])
  t.match(lines[0], /removed 4 entries of an earlier run.*kept 1 other files \(notes.txt\)/)
  t.end()
})

t.test('a checkpoint is complete when its marker, written last, matches its files', async (t) => {
  const m = new CheckpointManager(path.join(tempDir(t), 'run'), 3)
  const dir = await writeFake(m, 4)
  t.equal(checkpointProblem(dir), undefined)
  const listed = JSON.parse(fs.readFileSync(path.join(dir, COMPLETE_MARKER), 'utf8')).files
  t.same(Object.keys(listed).sort(), ['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json'])
  fs.truncateSync(path.join(dir, 'model.safetensors'), 5)
  t.equal(checkpointProblem(dir), 'model.safetensors has 5 bytes, 10 were written')
  fs.rmSync(path.join(dir, 'optimizer.safetensors'))
  t.match(checkpointProblem(dir), /optimizer.safetensors is missing|model.safetensors has 5 bytes/)
  fs.rmSync(path.join(dir, COMPLETE_MARKER))
  fs.rmSync(path.join(dir, 'trainer_state.json'))
  t.match(checkpointProblem(dir), /not finished/)
})

t.test('a kill while pruning never leaves a partial folder under a checkpoint name', async (t) => {
  const run = path.join(tempDir(t), 'run')
  const m = new CheckpointManager(run, 1)
  await writeFake(m, 5)
  // The "kill": the delete of the pruned checkpoint stops after its first file.
  const rmSync = nodeFs.rmSync
  let killed = false
  const restore = () => {
    nodeFs.rmSync = rmSync
    syncBuiltinESMExports()
  }
  t.teardown(restore)
  nodeFs.rmSync = ((p: fs.PathLike, opts?: fs.RmOptions) => {
    const dir = String(p)
    if (!killed && fs.existsSync(dir) && fs.statSync(dir).isDirectory() && fs.existsSync(path.join(dir, 'config.json')) && !dir.includes('.checkpoint-')) {
      killed = true
      rmSync(path.join(dir, 'config.json'))
      throw new Error('killed')
    }
    return rmSync(p, opts)
  }) as typeof fs.rmSync
  syncBuiltinESMExports()
  await t.rejects(writeFake(m, 10), /killed/)
  restore()
  t.ok(killed, 'the prune was interrupted')
  t.same(
    m.list().map((c) => c.step),
    [10],
    'checkpoint-5 is no longer listed',
  )
  t.equal(checkpointProblem(m.latest()!.dir), undefined)
  t.same(fs.readdirSync(run).filter((n) => n.startsWith('.trash-')).length, 1, 'the half-deleted folder is under a trash name')
  // The next resume removes it.
  const lines: string[] = []
  t.equal(openRunToResume(run, (l) => lines.push(l)).step, 10)
  t.same(fs.readdirSync(run).sort(), ['checkpoint-10'])
  t.match(lines[0], /removed 1 leftover/)
})

t.test('resume removes .checkpoint-N.tmp-PID folders of a killed save', async (t) => {
  const run = path.join(tempDir(t), 'run')
  const m = new CheckpointManager(run, 2)
  await writeFake(m, 2)
  fs.mkdirSync(path.join(run, '.checkpoint-4.tmp-12345'))
  fs.writeFileSync(path.join(run, '.checkpoint-4.tmp-12345', 'model.safetensors'), 'partial')
  const lines: string[] = []
  t.equal(openRunToResume(run, (l) => lines.push(l)).step, 2)
  t.same(fs.readdirSync(run), ['checkpoint-2'])
  t.match(lines.join('\n'), /\.checkpoint-4\.tmp-12345/)
})

t.test('a corrupt newest checkpoint: fall back to the previous complete one, or a clear error', async (t) => {
  const run = path.join(tempDir(t), 'run')
  const m = new CheckpointManager(run, 3)
  await writeFake(m, 2)
  const newest = await writeFake(m, 4)
  fs.truncateSync(path.join(newest, 'optimizer.safetensors'), 3)
  const lines: string[] = []
  t.equal(openRunToResume(run, (l) => lines.push(l)).step, 2)
  t.match(
    lines.join('\n'),
    new RegExp(`warning: ${newest} is incomplete or corrupt \\(optimizer.safetensors has 3 bytes, 10 were written\\); resuming from .*checkpoint-2 instead`),
  )
  t.ok(fs.existsSync(`${newest}.incomplete`), 'kept aside for inspection, no longer listed')
  t.same(
    m.list().map((c) => c.step),
    [2],
  )

  const only = path.join(tempDir(t), 'only')
  const dir = await writeFake(new CheckpointManager(only, 1), 3)
  fs.writeFileSync(path.join(dir, 'trainer_state.json'), '{"step": 3, "bet')
  t.throws(() => openRunToResume(only, () => {}), {
    name: 'EdpoInputError',
    message: new RegExp(
      `^--resume ${only}: ${dir} is incomplete or corrupt \\(trainer_state.json has 16 bytes, 10 were written\\), and no older checkpoint is complete$`,
    ),
  })
})

t.test('metrics.jsonl: truncation on resume drops a torn last line with a warning', (t) => {
  const run = tempDir(t)
  const log = new MetricsLog(run)
  for (let s = 1; s <= 4; s++) log.write({ step: s, loss: 1 / s })
  fs.appendFileSync(log.file, '{"step": 5, "lo') // disk full mid-line
  t.same(
    readMetrics(run).map((m) => m.step),
    [1, 2, 3, 4],
    'readers skip it',
  )
  const lines: string[] = []
  MetricsLog.truncateAfter(run, 3, (l) => lines.push(l))
  t.same(
    readMetrics(run).map((m) => m.step),
    [1, 2, 3],
  )
  t.match(lines[0], /metrics.jsonl:5: dropped a torn last line/)
  t.equal(fs.readFileSync(log.file, 'utf8').endsWith('}\n'), true, 'the next line appends cleanly')
  // A bad line elsewhere is not a torn write: an error naming file:line.
  fs.writeFileSync(log.file, '{"step":1}\nnot json\n{"step":2}\n')
  t.throws(() => MetricsLog.truncateAfter(run, 3), { name: 'EdpoInputError', message: /metrics.jsonl:2: not valid JSON/ })
  t.end()
})
