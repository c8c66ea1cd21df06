// examples/ run as written against the package (resolved by its own name).
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const examples = path.join(__dirname, '..', 'examples')

function run(file: string, args: string[]) {
  return spawnSync(process.execPath, [...process.execArgv, path.join(examples, file), ...args], { encoding: 'utf8', timeout: 300_000 })
}

function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

t.test('embed-trainer.ts trains with its own logging and checkpoints', (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const r = run('embed-trainer.ts', [model, writeToyPreferences(work, 16), out, '4'])
  t.equal(r.status, 0, r.stderr)
  const events = jsonLines(r.stdout)
  t.same(
    events.filter((e) => e.event === 'log').map((e) => e.step),
    [1, 2, 3, 4],
  )
  t.same(
    events.filter((e) => e.event === 'checkpoint').map((e) => path.basename(e.dir as string)),
    ['checkpoint-2', 'checkpoint-4'],
  )
  t.equal(events.at(-1)!.event, 'done')
  t.ok(fs.existsSync(path.join(out, 'checkpoint-4', 'model.safetensors')))
  t.match(r.stderr, /\[data\] train: 16 rows/)
  t.end()
})

t.test('custom-loop.ts runs its own loop through the public API', (t) => {
  const model = makeTrainableModel(t)
  const r = run('custom-loop.ts', [model, '3'])
  t.equal(r.status, 0, r.stderr)
  const steps = jsonLines(r.stdout)
  t.equal(steps.length, 3)
  t.ok(steps.every((s) => Number.isFinite(s.loss as number)))
  // Step 1 compares the policy with its own copy: every decision ties, so β stays put.
  t.equal(steps[1]!.beta, 0.1)
  t.end()
})

t.test('examples type-check against the published types', (t) => {
  const tsc = require.resolve('typescript/bin/tsc')
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(examples, 'tsconfig.json')], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.end()
})
