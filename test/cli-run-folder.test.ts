// The edpo command and the run folder, as a user or a scheduler meets it (child processes): SIGTERM
// checkpoints like Ctrl-C, a non-empty --out is refused with a way out, and folder errors print as
// one line without a stack trace (EDPO_DEBUG=1 shows it).
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { formatFailure } from '../lib/cli/failure'
import { EdpoInputError } from '../lib/core/errors'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')

function edpo(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('SIGTERM (SLURM, Kubernetes) writes one checkpoint and exits 143', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 64)
  const out = path.join(work, 'run')
  const child = spawn(
    process.execPath,
    [...process.execArgv, MAIN, 'train', '--model', model, '--data', data, '--out', out, '--batch-size', '2', '--max-steps', '400', '--max-length', '32'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const code = await new Promise<number | string | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve('timed out')
    }, 120_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (/step 2\/400/.test(stdout) && !child.killed) child.kill('SIGTERM')
    })
    child.on('exit', (c, signal) => {
      clearTimeout(timer)
      resolve(c ?? signal)
    })
  })
  t.equal(code, 143, stderr)
  t.match(stdout, /interrupted \(SIGTERM\): finishing this step and writing a checkpoint/)
  const checkpoints = fs.readdirSync(out).filter((n) => n.startsWith('checkpoint-'))
  t.equal(checkpoints.length, 1)
  const step = Number(checkpoints[0]!.split('-')[1])
  t.ok(step >= 2 && step < 400, `stopped at step ${step}`)
  t.ok(fs.existsSync(path.join(out, checkpoints[0]!, 'checkpoint-complete.json')))

  // The same folder again without --resume: refused, with the ways out.
  const again = edpo(['train', '--model', model, '--data', data, '--out', out, '--max-steps', '2'])
  t.equal(again.code, 1)
  t.match(
    again.stderr,
    new RegExp(`^edpo: --out ${out}: the folder is not empty .*pass --resume ${out} to continue that run, --overwrite-output-dir to replace it`),
  )
  t.notMatch(again.stderr, /\n\s+at /, 'no stack trace')
})

t.test('a run folder that cannot be created: one line naming it and the cause, before any loading', (t) => {
  const work = tempDir(t)
  const file = path.join(work, 'file.txt')
  fs.writeFileSync(file, '')
  const out = path.join(file, 'run')
  for (const command of ['train', 'sft']) {
    const r = edpo([command, '--model', '/nonexistent/model', '--data', '/nonexistent/d.jsonl', '--out', out])
    t.equal(r.code, 1)
    t.equal(r.stderr, `edpo: --out ${out}: cannot create the run folder ${out}: ${file} is a file, not a folder (ENOTDIR)\n`)
  }
  const debug = edpo(['train', '--model', 'm', '--data', 'd.jsonl', '--out', out], { EDPO_DEBUG: '1' })
  t.match(debug.stderr, /ENOTDIR\)\nEdpoFileError: .*\n\s+at /, 'EDPO_DEBUG=1 shows the stack')
  t.end()
})

t.test('--overwrite-output-dir is in both --help texts (one option table)', (t) => {
  t.match(edpo(['train', '--help']).stdout, /--overwrite-output-dir +start over in a non-empty --out/)
  t.match(edpo(['sft', '--help']).stdout, /--overwrite-output-dir +start over in a non-empty --out/)
  t.end()
})

t.test('formatFailure: user and file-system errors without a stack, bugs with one', (t) => {
  const fsError = Object.assign(new Error("EACCES: permission denied, open '/x/metrics.jsonl'"), { code: 'EACCES', syscall: 'open', path: '/x/metrics.jsonl' })
  t.equal(formatFailure(fsError, false), '/x/metrics.jsonl: permission denied (EACCES)')
  t.equal(formatFailure(new EdpoInputError('--beta: bad'), false), '--beta: bad')
  t.match(formatFailure(new EdpoInputError('--beta: bad'), true), /^--beta: bad\nEdpoInputError: --beta: bad\n\s+at /)
  t.match(formatFailure(new TypeError('x is undefined'), false), /^TypeError: x is undefined\n\s+at /)
  t.end()
})

t.test('edpo train --skip-invalid: the summary (printed once) points to <out>/invalid-rows.jsonl', (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 8)
  fs.appendFileSync(data, '{"prompt":"hello","chosen":"good"}\n'.repeat(5))
  const out = path.join(work, 'run')
  const r = edpo(['train', '--model', model, '--data', data, '--out', out, '--max-steps', '1', '--batch-size', '2', '--max-length', '32', '--skip-invalid'])
  t.equal(r.code, 0, r.stderr)
  const file = path.join(out, 'invalid-rows.jsonl')
  t.equal(r.stderr.match(/^train: /gm)?.length, 1, r.stderr)
  t.match(r.stderr, `train: 13 rows from 1 file → 8 pairs; skipped 5 invalid (5 missing field); all skipped rows in ${file}\n`)
  t.match(r.stderr, `  ... 2 more in ${file}\n`)
  t.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 5)
  t.end()
})
