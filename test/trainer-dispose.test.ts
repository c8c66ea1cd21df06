// Trainer.dispose(): a process that runs trainer after trainer (a sweep, an embedding app) gets
// each one's memory back at once, not at some later garbage collection. After dispose() the
// process's live tensor bytes are exactly what they were before the trainer was made (the
// allocator's count; helpers/dispose-run.ts runs each trainer after a collection), for ε-DPO with
// a reference model, LoRA, TR-DPO's moving reference, KTO and SFT. The trainer then refuses
// further use by name, and a second dispose() does nothing.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const CHILD = path.join(__dirname, 'helpers', 'dispose-run.ts')

t.test('after dispose() no tensor byte of the run is alive', async (t) => {
  const work = tempDir(t)
  const args = [makeTrainableModel(t, 3), makeTrainableModel(t, 4), writeToyPreferences(work, 16), work]
  const r = spawnSync(process.execPath, [...process.execArgv, '--expose-gc', CHILD, ...args], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  })
  t.equal(r.status, 0, r.stderr)
  const runs = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { label: string; trained: number; disposed: number })
  t.equal(runs.length, 5)
  for (const run of runs) {
    t.ok(run.trained > 0, `${run.label}: the trained run holds ${run.trained} B`)
    t.equal(run.disposed, 0, `${run.label}: every one of them is free after dispose()`)
  }
})

t.test('a disposed trainer refuses use by name; dispose() while training is refused', async (t) => {
  const model = makeTrainableModel(t, 3)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 8)
  const base = { model, data: [data], maxLength: 32, maxSteps: 1, batchSize: 2 }
  const trainer = await Trainer.create({ ...base, out: path.join(work, 'a') }, { log: () => {} })
  const running = trainer.train()
  t.throws(() => trainer.dispose(), /dispose\(\): the trainer is still training or evaluating; await it first/)
  await running
  trainer.dispose()
  trainer.dispose()
  await t.rejects(trainer.train(), /train\(\): this trainer was disposed/)
  await t.rejects(trainer.evaluate(), /evaluate\(\): this trainer was disposed/)
  await t.rejects(trainer.saveCheckpoint(), /saveCheckpoint\(\): this trainer was disposed/)
  t.ok(trainer.policy.disposed, 'its policy says so')
  t.throws(() => trainer.policy.namedParameters(), /model: the model was disposed/)
  const sft = await SftTrainer.create({ ...base, out: path.join(work, 'b') } as never, { log: () => {} })
  await sft.train()
  sft.dispose()
  t.throws(() => sft.model.namedParameters(), /model: the model was disposed/)
})
