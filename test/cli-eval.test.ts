// edpo eval: the reference defaults to the one the checkpoint's run trained against, the data is
// labelled as eval in the summary, and a folder that is not an edpo checkpoint asks for
// --reference-model.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

import { Trainer } from '../lib/train/trainer'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
const edpo = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })

t.test('the reference comes from the checkpoint, and the data is labelled eval', async (t) => {
  const work = tempDir(t)
  const model = makeTrainableModel(t)
  const data = writeToyPreferences(work, 8)
  const out = path.join(work, 'run')
  await (await Trainer.create({ model, data: [data], out, batchSize: 4, maxSteps: 1, learningRate: 1e-3, maxLength: 32 }, { log: () => {} })).train()
  const ckpt = path.join(out, 'checkpoint-1')
  const implicit = edpo(['eval', '--model', ckpt, '--data', data, '--json'])
  t.equal(implicit.status, 0, implicit.stderr)
  t.match(implicit.stderr, /^eval: /m, 'the summary calls the pairs eval')
  t.notMatch(implicit.stderr, /^train: /m)
  const explicit = edpo(['eval', '--model', ckpt, '--reference-model', model, '--data', data, '--json'])
  t.same(JSON.parse(implicit.stdout), JSON.parse(explicit.stdout), 'the same as naming the run\'s reference')
  const plain = edpo(['eval', '--model', model, '--data', data])
  t.equal(plain.status, 1)
  t.match(plain.stderr, /--reference-model is required: .* is not an edpo checkpoint \(no trainer_state\.json/)
})
