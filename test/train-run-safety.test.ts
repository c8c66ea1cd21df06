// The trainers guard the run folder before any work: a new run refuses an earlier run's folder,
// an unwritable folder fails before the model loads (naming the folder and the cause), file-system
// errors while writing name the file, and --resume survives a corrupt newest checkpoint and a
// metrics.jsonl that a kill left with duplicate and torn lines.
import * as fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import * as path from 'node:path'

import t from 'tap'

import { CheckpointManager } from '../lib/train/checkpoints'
import { MetricsLog, readMetrics } from '../lib/train/metrics-log'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const nodeFs = require('node:fs') as typeof fs
const quiet = { log: () => {} }
// Neither exists: an error about the run folder proves it was checked before model or data load.
const NOWHERE = { model: '/nonexistent/model', data: ['/nonexistent/data.jsonl'] }

/** Replaces fs[name] for the duration of `f`. */
async function withFs<K extends 'mkdirSync' | 'appendFileSync'>(name: K, fake: (typeof fs)[K], f: () => Promise<void>): Promise<void> {
  const real = nodeFs[name]
  nodeFs[name] = fake
  syncBuiltinESMExports()
  try {
    await f()
  } finally {
    nodeFs[name] = real
    syncBuiltinESMExports()
  }
}

const errno = (code: string, syscall: string, p: string) => Object.assign(new Error(`${code}: ${syscall} '${p}'`), { code, syscall, path: p })

t.test('a new run (train or sft) refuses a non-empty --out before loading anything', async (t) => {
  const out = path.join(tempDir(t), 'run')
  fs.mkdirSync(path.join(out, 'checkpoint-20'), { recursive: true })
  const refused = new RegExp(`--out ${out}: the folder is not empty \\(checkpoint-20\\).*--resume.*--overwrite-output-dir`)
  await t.rejects(Trainer.create({ ...NOWHERE, out }, quiet), { name: 'EdpoInputError', message: refused })
  await t.rejects(SftTrainer.create({ ...NOWHERE, out }, quiet), { name: 'EdpoInputError', message: refused })
  await t.rejects(Trainer.create({ ...NOWHERE, out, overwriteOutputDir: true }, { ...quiet, resume: out }), /give one of them/)
})

t.test('overwriteOutputDir: a 2-step run over a 4-step one keeps its own checkpoint and only its own metrics', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 16)
  const out = path.join(work, 'run')
  const config = { model, data: [data], out, batchSize: 4, learningRate: 1e-3, maxLength: 32, keepLast: 1 }
  await (await Trainer.create({ ...config, maxSteps: 4 }, quiet)).train()
  await (await Trainer.create({ ...config, maxSteps: 2, overwriteOutputDir: true }, quiet)).train()
  t.same(
    fs.readdirSync(out).filter((n) => n.startsWith('checkpoint')),
    ['checkpoint-2'],
  )
  t.same(
    readMetrics(out)
      .filter((m) => 'loss' in m)
      .map((m) => m.step),
    [1, 2],
  )
})

t.test('an unwritable run folder fails first, naming the folder and the cause', async (t) => {
  const work = tempDir(t)
  const file = path.join(work, 'file.txt')
  fs.writeFileSync(file, '')
  await t.rejects(Trainer.create({ ...NOWHERE, out: path.join(file, 'run') }, quiet), {
    name: 'EdpoFileError',
    message: `--out ${path.join(file, 'run')}: cannot create the run folder ${path.join(file, 'run')}: ${file} is a file, not a folder (ENOTDIR)`,
  })
  // Read-only file system: mkdir's real cause, not Node's recursive-mkdir ENOENT.
  const out = path.join(work, 'ro', 'run')
  await withFs(
    'mkdirSync',
    ((p: fs.PathLike) => {
      throw errno('EROFS', 'mkdir', String(p))
    }) as typeof fs.mkdirSync,
    async () => {
      await t.rejects(SftTrainer.create({ ...NOWHERE, out }, quiet), {
        name: 'EdpoFileError',
        message: `--out ${out}: cannot create the run folder ${out}: read-only file system (EROFS)`,
      })
    },
  )
  // sysfs refuses new folders and files even to root.
  if (process.platform === 'linux' && fs.existsSync('/sys/kernel')) {
    await t.rejects(Trainer.create({ ...NOWHERE, out: '/sys/edpo-test/run' }, quiet), {
      name: 'EdpoFileError',
      message: /^--out \/sys\/edpo-test\/run: cannot create the run folder/,
    })
    await t.rejects(Trainer.create({ ...NOWHERE, out: '/sys/kernel' }, quiet), {
      name: 'EdpoFileError',
      message: /^--out \/sys\/kernel: the run folder \/sys\/kernel is not writable: /,
    })
  }
})

t.test('a full disk names the file being written', async (t) => {
  const run = tempDir(t)
  const m = new CheckpointManager(run, 1)
  const target = path.join(run, '.checkpoint-3.tmp-' + process.pid, 'optimizer.safetensors')
  await t.rejects(
    m.save(3, async () => {
      throw errno('ENOSPC', 'write', target)
    }),
    { name: 'EdpoFileError', message: `checkpoint-3: cannot write ${target}: no space left on device (ENOSPC)` },
  )
  t.same(fs.readdirSync(run), [], 'nothing left behind')
  const log = new MetricsLog(run)
  await withFs(
    'appendFileSync',
    ((p: fs.PathOrFileDescriptor) => {
      throw errno('ENOSPC', 'write', String(p))
    }) as typeof fs.appendFileSync,
    async () => {
      t.throws(() => log.write({ step: 1, loss: 1 }), { name: 'EdpoFileError', message: `cannot write ${log.file}: no space left on device (ENOSPC)` })
    },
  )
})

t.test('resume after a kill: corrupt newest checkpoint, duplicate and torn metrics lines', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 32)
  const out = path.join(work, 'run')
  const config = { model, data: [data], out, batchSize: 4, learningRate: 1e-3, maxLength: 32, maxSteps: 4, saveEvery: 2, keepLast: 2 }
  await (await Trainer.create(config, quiet)).train()
  // The kill: checkpoint-4's weights were cut short, and metrics.jsonl ends mid-line.
  fs.truncateSync(path.join(out, 'checkpoint-4', 'model.safetensors'), 100)
  fs.appendFileSync(path.join(out, 'metrics.jsonl'), '{"step":5,"lo')
  const lines: string[] = []
  const resumed = await Trainer.create(config, { resume: out, log: (l) => lines.push(l) })
  t.equal(resumed.state.step, 2)
  const text = lines.join('\n')
  t.match(text, /checkpoint-4 is incomplete or corrupt \(model.safetensors has 100 bytes, \d+ were written\); resuming from .*checkpoint-2 instead/)
  t.match(text, /metrics.jsonl:\d+: dropped a torn last line/)
  await resumed.train()
  const steps = readMetrics(out)
    .filter((m) => 'loss' in m)
    .map((m) => m.step)
  t.same(steps, [1, 2, 3, 4], 'one line per step: nothing duplicated')
})

t.test('--skip-invalid writes every skipped row to <out>/invalid-rows.jsonl', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const rows = [...Array.from({ length: 8 }, () => ({ prompt: 'hello', completion: 'world' })), ...Array.from({ length: 5 }, () => ({ prompt: 'hello' }))]
  const file = writeJsonl(path.join(work, 'sft.jsonl'), rows)
  const out = path.join(work, 'run')
  const lines: string[] = []
  await SftTrainer.create({ model, data: [file], out, skipInvalid: true, maxSteps: 1, maxLength: 32 }, { log: (l) => lines.push(l) })
  const listed = fs
    .readFileSync(path.join(out, 'invalid-rows.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
  t.same(
    listed.map((r) => [r.split, r.source, r.field, r.reason]),
    [9, 10, 11, 12, 13].map((n) => ['train', `${file}:${n}`, 'completion', 'missing field']),
  )
  const summary = lines.find((l) => l.startsWith('data: '))
  t.match(summary, `skipped 5 invalid (all listed in ${path.join(out, 'invalid-rows.jsonl')})`)
})
