// The edpo command as a user runs it (child processes): help, train from a YAML config, Ctrl-C
// writing a checkpoint, resume, eval, generate, and readable errors.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')

function edpo(args: string[]) {
  const r = spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function edpoAsync(args: string[]): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
}

t.test('help and unknown commands', (t) => {
  const top = edpo(['--help'])
  t.equal(top.code, 0)
  t.match(top.stdout, /train .*\n.*eval .*\n.*generate/)
  const train = edpo(['train', '--help'])
  t.equal(train.code, 0)
  t.match(train.stdout, /--grad-accumulation <value>/)
  t.match(edpo(['eval', '--help']).stdout, /--reference-model <value>/)
  t.match(edpo(['generate', '--help']).stdout, /--max-new-tokens <value>/)
  const bad = edpo(['trian'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unknown command 'trian'/)
  t.end()
})

t.test('train from a config file, then eval and generate with the checkpoint', (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 32)
  const out = path.join(work, 'run')
  const config = path.join(work, 'run.yaml')
  fs.writeFileSync(config, `model: ${model}\ndata: ${data}\nout: ${out}\nbatch_size: 4\nmax_steps: 2\nlearning_rate: 1.0e-3\nmax_length: 32\n`)
  const r = edpo(['train', '--config', config, '--beta', '0.2'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /step 2\/2 +loss [\d.]+ +acc [\d.]+ +β 0.2/, 'plain progress lines off a TTY')
  t.match(r.stderr, /train: 32 rows from 1 file → 32 pairs/)
  t.ok(fs.existsSync(path.join(out, 'checkpoint-2', 'model.safetensors')))
  const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')
  t.equal(JSON.parse(lines[0]!)['kl/beta'], 0.2, 'flags override the file')

  const ev = edpo(['eval', '--model', path.join(out, 'checkpoint-2'), '--reference-model', model, '--data', data, '--json', '--max-length', '32'])
  t.equal(ev.code, 0, ev.stderr)
  const result = JSON.parse(ev.stdout)
  t.equal(result.pairs, 32)
  t.ok(result.kl > 0 && Number.isFinite(result.kl), `KL ${result.kl}`)
  t.ok(result.accuracy >= 0 && result.accuracy <= 1)
  const same = JSON.parse(edpo(['eval', '--model', model, '--reference-model', model, '--data', data, '--json', '--max-length', '32']).stdout)
  t.ok(Math.abs(same.kl) < 1e-6, 'a model against itself has zero KL')

  const gen = edpo(['generate', '--model', path.join(out, 'checkpoint-2'), '--prompt', 'how are you ?', '--chat', '--max-new-tokens', '4'])
  t.equal(gen.code, 0, gen.stderr)
  t.equal(gen.stdout.trim().split('\n').length, 1)
  t.end()
})

t.test('Ctrl-C writes a checkpoint and exits; --resume continues', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 64)
  const out = path.join(work, 'run')
  const child = edpoAsync(['train', '--model', model, '--data', data, '--out', out, '--batch-size', '2', '--max-steps', '400', '--max-length', '32'])
  let stdout = ''
  const code = await new Promise<number | null>((resolve) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (/step 2\/400/.test(stdout) && !child.killed) child.kill('SIGINT')
    })
    child.on('exit', (c) => resolve(c))
  })
  t.equal(code, 130)
  t.match(stdout, /interrupted: finishing this step/)
  const checkpoints = fs.readdirSync(out).filter((n) => n.startsWith('checkpoint-'))
  t.equal(checkpoints.length, 1)
  const step = Number(checkpoints[0]!.split('-')[1])
  t.ok(step >= 2 && step < 400, `stopped at step ${step}`)

  const resumed = edpo(['train', '--resume', out, '--help'])
  t.equal(resumed.code, 0, '--help wins over --resume')
  const bad = edpo(['train', '--resume', path.join(work, 'nothing')])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /no checkpoint-<step> folder to resume from/)
})

t.test('bad settings are reported in one line, with the field', (t) => {
  const r = edpo(['train', '--model', 'm', '--data', 'd.jsonl', '--out', 'o', '--beta', '-1'])
  t.equal(r.code, 1)
  t.match(r.stderr, /^edpo: --beta: Too small/m)
  const missing = edpo(['train', '--model', 'm', '--out', 'o'])
  t.match(missing.stderr, /^edpo: --data is required \(training data/m)
  t.end()
})
