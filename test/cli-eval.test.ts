// edpo eval: the reference defaults to the one the checkpoint's run trained against, the data is
// labelled as eval in the summary, and a folder that is not an edpo checkpoint asks for
// --reference-model; a LoRA run started from --adapter is evaluated against base + that adapter.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

import { SftTrainer, Trainer } from '../lib/train/engine'
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
  t.same(JSON.parse(implicit.stdout), JSON.parse(explicit.stdout), "the same as naming the run's reference")
  const plain = edpo(['eval', '--model', model, '--data', data])
  t.equal(plain.status, 1)
  t.match(plain.stderr, /--reference-model is required: .* is not an edpo checkpoint \(no trainer_state\.json/)
})

t.test('a LoRA run started from --adapter: the reference is the base with that adapter on', async (t) => {
  const work = tempDir(t)
  const model = makeTrainableModel(t)
  const data = writeToyPreferences(work, 8)
  const sftOut = path.join(work, 'sft')
  await (
    await SftTrainer.create({ model, data: [data], out: sftOut, batchSize: 4, maxSteps: 2, learningRate: 1e-2, maxLength: 32, loraR: 4 }, { log: () => {} })
  ).train()
  const adapter = path.join(sftOut, 'checkpoint-2')
  const out = path.join(work, 'dpo')
  await (
    await Trainer.create(
      { model, data: [data], out, batchSize: 4, maxSteps: 2, learningRate: 1e-2, warmupRatio: 0, maxLength: 32, method: 'dpo', adapter, loraDropout: 0 },
      { log: () => {} },
    )
  ).train()
  const ckpt = path.join(out, 'checkpoint-2')
  const run = (extra: string[]) => {
    const r = edpo(['eval', '--model', ckpt, '--data', data, '--json', ...extra])
    t.equal(r.status, 0, r.stderr)
    return JSON.parse(r.stdout) as { kl: number; margin: number }
  }
  const implicit = run([])
  t.same(implicit, run(['--reference-model', adapter]), 'the same as naming the adapter (base + adapter) as the reference')
  t.ok(implicit.kl > 0, `the policy moved away from it (KL ${implicit.kl})`)
  t.not(implicit.kl, run(['--reference-model', model]).kl, 'not the bare base')
})
