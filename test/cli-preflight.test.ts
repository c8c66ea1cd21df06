// What a new user types wrong first gets a message that says what to do, before any data is read
// or model loaded: a Hub id instead of a folder, a folder that is not a model, an unsupported
// architecture, --device cuda on a CPU build; plus --version and arguments doctor does not take.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { runtime } from '../lib/index'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
// Hub ids are looked up in an empty cache, offline: the tests never touch the network.
const edpo = (args: string[], cwd?: string) =>
  spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    cwd,
    env: { ...process.env, HF_HUB_OFFLINE: '1', HF_HUB_CACHE: path.join(cwd ?? '/nonexistent', 'empty-hub-cache') },
  })

t.test('model folders are checked first, with what to do', (t) => {
  const work = tempDir(t)
  // The data file does not exist either: the model error must come first.
  const base = ['--data', path.join(work, 'missing.jsonl'), '--out', path.join(work, 'run')]
  const hub = edpo(['train', '--model', 'meta-llama/Meta-Llama-3-8B-Instruct', ...base], work)
  t.equal(hub.status, 1)
  t.match(
    hub.stderr,
    /^edpo: --model meta-llama\/Meta-Llama-3-8B-Instruct: HF_HUB_OFFLINE=1, and the cache .* lacks what the run needs of meta-llama\/Meta-Llama-3-8B-Instruct \(revision main\): no refs\/main\. Unset HF_HUB_OFFLINE to download it, or fetch it with `huggingface-cli download meta-llama\/Meta-Llama-3-8B-Instruct`/m,
  )
  t.notMatch(hub.stderr, /tokenizer\.json/, 'not the old tokenizer.json message')
  t.match(edpo(['train', '--model', path.join(work, 'nope'), ...base]).stderr, /--model .*nope: no such folder \(a Hugging Face model folder/)
  t.match(edpo(['train', '--model', work, ...base]).stderr, /--model .*: no config\.json, so not a Hugging Face model folder/)
  const gpt2 = path.join(work, 'gpt2')
  fs.mkdirSync(gpt2)
  fs.writeFileSync(path.join(gpt2, 'config.json'), JSON.stringify({ model_type: 'gpt2' }))
  t.match(
    edpo(['train', '--model', gpt2, ...base]).stderr,
    /config\.json: model_type "gpt2" is not supported \(expected one of llama, mistral, qwen2, gemma2\)/,
  )
  t.match(edpo(['sft', '--model', 'org/model', ...base], work).stderr, /--model org\/model: HF_HUB_OFFLINE=1, and the cache/)
  t.match(
    edpo(['train', '--model', makeTrainableModel(t), '--reference-model', 'org/ref', ...base], work).stderr,
    /--reference-model org\/ref: HF_HUB_OFFLINE=1, and the cache/,
  )
  t.end()
})

t.test('--device cuda on a CPU build fails before the data loads', { skip: runtime().cudaBuild ? 'this is a CUDA build' : false }, (t) => {
  const work = tempDir(t)
  const data = writeJsonl(path.join(work, 'p.jsonl'), [{ prompt: 'a', chosen: 'b', rejected: 'c' }])
  const r = edpo(['train', '--model', makeTrainableModel(t), '--data', data, '--out', path.join(work, 'run'), '--device', 'cuda'])
  t.equal(r.status, 1)
  t.match(r.stderr, /^edpo: --device cuda: this edpo build is CPU-only\. For GPUs, build from source against a CUDA libtorch: EDPO_CUDA=1 npm rebuild edpo/m)
  t.notMatch(r.stderr, /train: \d+ rows/, 'no data summary: it failed first')
  t.notOk(fs.existsSync(path.join(work, 'run')), 'the run folder was not created')
  t.end()
})

t.test('--version, and doctor takes no arguments', (t) => {
  const version = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version
  const v = edpo(['--version'])
  t.equal(v.status, 0)
  t.equal(v.stdout, `edpo ${version}\n`)
  const d = edpo(['doctor', '--verbose'])
  t.equal(d.status, 1)
  t.match(d.stderr, /edpo doctor takes no arguments, got '--verbose'/)
  t.end()
})

t.test('--resume extends a run with --max-steps and refuses other changes, naming them', async (t) => {
  const { Trainer } = await import('../lib/train/engine')
  const { writeToyPreferences } = await import('./helpers/train-fixtures')
  const work = tempDir(t)
  const model = makeTrainableModel(t)
  const data = writeToyPreferences(work, 16)
  const out = path.join(work, 'run')
  const config = { model, data: [data], out, batchSize: 4, maxSteps: 2, learningRate: 1e-3, maxLength: 32, warmupRatio: 0 }
  await (await Trainer.create(config, { log: () => {} })).train()
  const longer = edpo(['train', '--resume', out, '--max-steps', '3'])
  t.equal(longer.status, 0, longer.stderr)
  t.ok(fs.existsSync(path.join(out, 'checkpoint-3')), 'the run went on to step 3')
  const changed = edpo(['train', '--resume', out, '--max-steps', '4', '--beta', '0.5', '--learning-rate', '1e-5'])
  t.equal(changed.status, 1)
  t.match(
    changed.stderr,
    /--resume .*: a resumed run keeps its stored options; these differ: --beta 0\.5 \(the run has 0\.1\); --learning-rate 0\.00001 \(the run has 0\.001\)\. Only --max-steps, --epochs, --save-every, --eval-every, --keep-last, --log-every, --zero-stage, --grad-overlap, --bucket-mb may change on resume/,
  )
  t.notOk(fs.existsSync(path.join(out, 'checkpoint-4')), 'nothing ran')
})

t.test('progress while the data and the models load', (t) => {
  const work = tempDir(t)
  const model = makeTrainableModel(t)
  const data = writeJsonl(path.join(work, 'p.jsonl'), [{ prompt: 'how are you ?', chosen: 'good .', rejected: 'bad .' }])
  const r = edpo(['train', '--model', model, '--data', data, '--out', path.join(work, 'run'), '--max-steps', '1', '--batch-size', '1', '--max-length', '32'])
  t.equal(r.status, 0, r.stderr)
  const order = ['reading and tokenizing', 'train: 1 row', 'loading the model from', 'loading the reference from'].map((s) => r.stderr.indexOf(s))
  t.ok(
    order.every((i) => i >= 0),
    `each line is there:\n${r.stderr}`,
  )
  t.same(
    [...order].sort((a, b) => a - b),
    order,
    'in the order the work happens',
  )
  t.end()
})
