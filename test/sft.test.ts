// `edpo sft` (SftTrainer): the prompt is masked out of the cross-entropy (checked against an
// independent host computation), the loss falls on a learnable set, checkpoints reload, a resumed
// run ends bit-exact with an uninterrupted one, bad rows are named, and the CLI runs it.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, data, io } from '../lib/index'
import { readMetrics } from '../lib/train/metrics-log'
import { SftTrainer } from '../lib/train/engine'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel } from './helpers/train-fixtures'

const quiet = { log: () => {} }
const PROMPTS = ['how are you ?', 'hello world !', 'the cat sat .', 'the dog ran .', 'are you fine ?', 'i am the dog .']
const ANSWERS = ['i am good .', 'good , thanks !', 'the cat sat .', 'the dog ran !', 'i am fine .', 'hello dog !']

function writeSft(dir: string, n = 48): string {
  return writeJsonl(
    path.join(dir, 'sft.jsonl'),
    Array.from({ length: n }, (_, i) => ({ prompt: PROMPTS[i % 6]!, completion: ANSWERS[i % 6]! })),
  )
}

function weights(dir: string): Record<string, number[]> {
  const tensors = io.loadSafetensors(path.join(dir, 'model.safetensors'))
  return Object.fromEntries(Object.entries(tensors).map(([n, x]) => [n, Array.from(x.toArray() as Float32Array)]))
}

t.test('collateSequences: labels are shifted and only completion labels count', (t) => {
  const b = data.collateSequences(
    [
      { prompt: Int32Array.from([7, 8]), completion: Int32Array.from([9, 2]) },
      { prompt: Int32Array.from([7]), completion: Int32Array.from([10, 11, 2]) },
    ],
    0,
  )
  t.same(b.inputIds.shape, [2, 4])
  t.same(Array.from(b.inputIds.toArray() as BigInt64Array, Number), [7, 8, 9, 2, 7, 10, 11, 2])
  // Row 0: position 1 (token 8, the last prompt token) predicts 9, position 2 predicts EOS.
  t.same(Array.from(b.lossMask.toArray() as Float32Array), [0, 1, 1, 0, 1, 1, 1, 0])
  t.same(Array.from(b.labels.toArray() as BigInt64Array, Number), [0, 9, 2, 0, 10, 11, 2, 0])
  t.equal(b.tokens, 5)
  t.end()
})

t.test('the SFT loss is the completion-only cross-entropy (host recomputation)', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const trainer = await SftTrainer.create({ model, data: [writeSft(work, 6)], out: path.join(work, 'run'), batchSize: 6, maxSteps: 1 }, quiet)
  const examples = trainer.data.train
  const got = (await trainer.evaluate(examples))!.eval_loss!
  // Independent: full logits from a fresh load, log-softmax in float64 on the host.
  const lm = await CausalLM.fromPretrained(model)
  let nll = 0
  let count = 0
  let allNll = 0
  let allCount = 0
  for (const ex of examples) {
    const seq = [...ex.prompt, ...ex.completion]
    const logits = lm.forward(idsTensor(seq), { grad: false }).logits.to('float64').toArray() as Float64Array
    const V = logits.length / seq.length
    for (let pos = 0; pos < seq.length - 1; pos++) {
      const row = logits.subarray(pos * V, (pos + 1) * V)
      const max = Math.max(...row)
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0))
      const lp = row[seq[pos + 1]!]! - lse
      allNll -= lp
      allCount++
      if (pos >= ex.prompt.length - 1) {
        nll -= lp
        count++
      }
    }
  }
  t.ok(Math.abs(got - nll / count) < 1e-4, `loss ${got} vs host ${nll / count}`)
  t.ok(Math.abs(allNll / allCount - nll / count) > 1e-3, 'including the prompt tokens would give another value')
  t.equal(
    count,
    examples.reduce((a, e) => a + e.completion.length, 0),
  )
})

function idsTensor(seq: number[]) {
  return data.collateSequences([{ prompt: Int32Array.from(seq), completion: Int32Array.from([]) }], 0).inputIds
}

t.test('the loss falls; checkpoints are model folders with tokenizer files', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const trainer = await SftTrainer.create(
    { model, data: [writeSft(work)], evalFraction: 0.25, out, batchSize: 8, maxSteps: 20, learningRate: 3e-3, warmupRatio: 0, maxLength: 32 },
    quiet,
  )
  const before = (await trainer.evaluate())!.eval_loss!
  await trainer.train()
  const lines = readMetrics(out)
  const train = lines.filter((l) => 'loss' in l)
  t.equal(train.length, 20)
  for (const key of ['loss', 'token_accuracy', 'grad_norm', 'learning_rate', 'tokens_per_second', 'epoch'])
    t.ok(
      train.every((l) => Number.isFinite(l[key])),
      key,
    )
  t.ok(train[19]!.loss! < 0.5 * train[0]!.loss!, `train loss ${train[0]!.loss} → ${train[19]!.loss}`)
  const after = lines.find((l) => 'eval_loss' in l)!.eval_loss!
  t.ok(after < before, `eval loss ${before} → ${after}`)
  const ckpt = path.join(out, 'checkpoint-20')
  t.ok(fs.existsSync(path.join(ckpt, 'tokenizer.json')) && fs.existsSync(path.join(ckpt, 'optimizer.safetensors')))
  t.equal(JSON.parse(fs.readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8')).kind, 'sft')
  const reloaded = await CausalLM.fromPretrained(ckpt)
  t.same(
    Array.from(reloaded.namedParameters().get('model.norm.weight')!.toArray() as Float32Array),
    Array.from(trainer.model.namedParameters().get('model.norm.weight')!.toArray() as Float32Array),
  )
})

t.test('resume after an interruption ends with the same weights and metrics', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const config = {
    model,
    data: [writeSft(work)],
    batchSize: 8,
    gradAccumulation: 2,
    maxSteps: 6,
    learningRate: 2e-3,
    saveEvery: 2,
    warmupRatio: 0.2,
    maxLength: 32,
  }
  const full = path.join(work, 'full')
  await (await SftTrainer.create({ ...config, out: full }, quiet)).train()
  const cut = path.join(work, 'cut')
  const first = await SftTrainer.create({ ...config, out: cut }, quiet)
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 3) abort.abort()
  })
  await first.train({ signal: abort.signal })
  t.same(
    fs
      .readdirSync(cut)
      .filter((n) => n.startsWith('checkpoint-'))
      .sort(),
    ['checkpoint-2', 'checkpoint-3'],
  )
  const resumed = await (await SftTrainer.create({}, { ...quiet, resume: cut })).train()
  t.equal(resumed.step, 6)
  t.same(weights(path.join(cut, 'checkpoint-6')), weights(path.join(full, 'checkpoint-6')))
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip))
  // A folder without checkpoints cannot be resumed.
  await t.rejects(SftTrainer.create({}, { ...quiet, resume: path.join(work, 'nothing') }), /no checkpoint-<step> folder/)
})

t.test('bad rows name file:line', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const file = writeJsonl(path.join(work, 'bad.jsonl'), [
    { prompt: 'hello', completion: 'world' },
    { prompt: 'hello', answer: 'world' },
  ])
  await t.rejects(SftTrainer.create({ model, data: [file], out: path.join(work, 'r') }, quiet), /bad\.jsonl:2: completion: missing/)
  await t.rejects(SftTrainer.create({ model, data: [file], out: path.join(work, 'r'), learningRate: -1 }, quiet), /learningRate/)
})

t.test('edpo sft on the command line, with --help from the option table', (t) => {
  const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
  const run = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })
  const help = run(['sft', '--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /--learning-rate <value> +peak learning rate \(default 0.00001\)/)
  t.notMatch(help.stdout, /--beta/, 'no DPO options')
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const r = run(['sft', '--model', model, '--data', writeSft(work, 16), '--out', out, '--batch-size', '8', '--max-steps', '2', '--learning-rate', '1e-3'])
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /step 2\/2 +loss [\d.]+ +token acc [\d.]+/)
  t.ok(fs.existsSync(path.join(out, 'checkpoint-2', 'model.safetensors')))
  t.end()
})

t.test('bf16 weights: the loss is computed in fp32 and still falls', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const out = path.join(work, 'bf16')
  const trainer = await SftTrainer.create(
    { model, data: [writeSft(work)], out, batchSize: 8, maxSteps: 10, learningRate: 3e-3, warmupRatio: 0, maxLength: 32, dtype: 'bfloat16' },
    quiet,
  )
  await trainer.train()
  const train = readMetrics(out).filter((l) => 'loss' in l)
  t.ok(train.every((l) => Number.isFinite(l.loss)))
  t.ok(train[9]!.loss! < train[0]!.loss!, `loss ${train[0]!.loss} → ${train[9]!.loss}`)
  t.equal(trainer.model.namedParameters().get('model.norm.weight')!.dtype, 'bfloat16')
})
