// trainer_state.json is a superset of Hugging Face's: global_step, max_steps, epoch, the logging
// settings and log_history (metrics.jsonl up to the checkpoint's step), beside edpo's own fields.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

t.test("Hugging Face's trainer_state.json fields, with edpo's beside them", async (t) => {
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const trainer = await Trainer.create(
    {
      model: makeTrainableModel(t),
      data: [writeToyPreferences(work, 16)],
      out,
      batchSize: 4,
      maxSteps: 3,
      saveEvery: 2,
      keepLast: 3,
      learningRate: 1e-3,
      maxLength: 32,
      evalFraction: 0.25,
    },
    { log: () => {} },
  )
  await trainer.train()
  const read = (step: number) => JSON.parse(fs.readFileSync(path.join(out, `checkpoint-${step}`, 'trainer_state.json'), 'utf8')) as Record<string, unknown>
  const two = read(2)
  const three = read(3)
  t.equal(two.global_step, 2)
  t.equal(three.global_step, 3)
  t.equal(three.max_steps, 3)
  t.equal(three.train_batch_size, 4)
  t.equal(three.logging_steps, 1)
  t.equal(three.save_steps, 2)
  t.equal(three.best_metric, null)
  t.same(
    (two.log_history as { step: number }[]).map((e) => e.step),
    [1, 2],
    'checkpoint-2 holds the log up to step 2',
  )
  t.same(three.log_history, readMetrics(out), 'the last checkpoint holds all of metrics.jsonl (train and eval lines)')
  t.ok(
    (three.log_history as Record<string, number>[]).some((e) => 'eval_loss' in e),
    'eval lines included',
  )
  // edpo's own fields are still there for --resume.
  for (const key of ['step', 'totalSteps', 'beta', 'sampler', 'config']) t.ok(key in three, key)
})
