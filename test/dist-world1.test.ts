// One rank through the launcher (--nproc-per-node 1): what a one-GPU user writes, or a config made
// for many GPUs run on one. A group of one reduces nothing, so ZeRO-3 × 1 trains as one process,
// but it still shards: into one chunk per gather unit, and its checkpoints hold the optimizer state
// so (one rank's file, like N ranks'). Those resume in one process and at ZeRO-1 × 1, one process's
// at ZeRO-3 × 1, and a ZeRO-3 × 2 checkpoint goes on at ZeRO-3 × 1 (lib/distributed/zero3-resume.ts).
//
// Bound: nothing is summed across ranks; only ZeRO-2/3 add the gradient norm's Σg² in another
// order (one fp32 rounding of a clip factor that AdamW's normalisation all but cancels). 1e-6 is far
// below what a lost or misplaced moment does to the first resumed update (~lr = 1e-3), and the
// test checks steps 3-4 move the weights by more than 10 × it.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { tempDir } from './helpers/data-fixtures'
import { folderWeights, runCli, weightDifference } from './helpers/dist-run'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const BOUND = 1e-6

/** Step → loss of a run's metrics.jsonl. */
function losses(out: string): Map<number, number> {
  return new Map(readMetrics(out).flatMap((m) => (m.loss === undefined ? [] : [[m.step, m.loss] as const])))
}

t.test('one rank through the launcher: ZeRO-3 × 1 trains as one process, and its checkpoints resume across layouts', async (t) => {
  const model = makeTrainableModel(t, 3)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 24)
  const out = (name: string) => path.join(work, name)
  const common = ['--model', model, '--data', data, '--learning-rate', '1e-3', '--warmup-ratio', '0', '--max-length', '32']
  const run = [...common, '--beta', '0.5', '--epsilon', '0.1', '--batch-size', '2', '--seed', '3', '--log-every', '1', '--max-steps', '4', '--save-every', '2']
  const train = (label: string, args: readonly string[]) => {
    const r = runCli(['train', ...args])
    t.equal(r.status, 0, `${label}: exits 0 (${r.stderr.slice(-1200)})`)
  }
  const compare = (label: string, got: string, want: string, steps: number[]) => {
    const [g, w] = [losses(got), losses(want)]
    t.same([...g.keys()], steps, `${label}: logged steps ${steps.join(', ')}`)
    const worst = Math.max(...steps.map((s) => Math.abs(g.get(s)! - w.get(s)!) / Math.abs(w.get(s)!)))
    t.ok(worst <= BOUND, `${label}: losses as one process's (max relative difference ${worst.toExponential(2)} ≤ ${BOUND})`)
    const dw = weightDifference(t, label, got, want)
    t.ok(dw <= BOUND, `${label}: final weights as one process's (max |Δw| ${dw.toExponential(2)} ≤ ${BOUND})`)
  }
  const cut = (from: string, name: string) => {
    fs.cpSync(path.join(out(from), 'checkpoint-2'), path.join(out(name), 'checkpoint-2'), { recursive: true })
    return out(name)
  }

  // ZeRO-0-2 × 1 against one process: node dist/bench/gpu/node-e2e.js --only dist (CI runs it on the CPU).
  train('one process', [...run, '--out', out('one')])
  train('ZeRO-3 × 1', [...run, '--out', out('z3'), '--nproc-per-node', '1', '--zero-stage', '3', '--dist-timeout', '60'])
  compare('ZeRO-3 × 1', out('z3'), out('one'), [1, 2, 3, 4])
  t.ok(
    fs.existsSync(path.join(out('z3'), 'checkpoint-2', 'optimizer-rank0-of-1.safetensors')),
    'ZeRO-3 × 1 writes its one optimizer shard (chunks of its gather units)',
  )

  // ZeRO-3 × 1's step-2 checkpoint in one process and at ZeRO-1 × 1; one process's at ZeRO-3 × 1.
  train('ZeRO-3 × 1 → one process', ['--resume', cut('z3', 'z3-to-one')])
  compare('ZeRO-3 × 1 → one process', out('z3-to-one'), out('one'), [3, 4])
  train('ZeRO-3 × 1 → ZeRO-1 × 1', ['--resume', cut('z3', 'z3-to-z1'), '--nproc-per-node', '1', '--zero-stage', '1', '--dist-timeout', '60'])
  compare('ZeRO-3 × 1 → ZeRO-1 × 1', out('z3-to-z1'), out('one'), [3, 4])
  train('one process → ZeRO-3 × 1', ['--resume', cut('one', 'one-to-z3'), '--nproc-per-node', '1', '--zero-stage', '3', '--dist-timeout', '60'])
  compare('one process → ZeRO-3 × 1', out('one-to-z3'), out('one'), [3, 4])

  // Two ranks at ZeRO-3 (chunks of 2), then one GPU: on one rank at ZeRO-3 as in one process.
  train('ZeRO-3 × 2', [...run, '--out', out('z3x2'), '--max-steps', '2', '--nproc-per-node', '2', '--zero-stage', '3', '--dist-timeout', '60'])
  train('ZeRO-3 × 2 → one process', ['--resume', cut('z3x2', 'z3x2-to-one'), '--max-steps', '4'])
  train('ZeRO-3 × 2 → ZeRO-3 × 1', [
    '--resume',
    cut('z3x2', 'z3x2-to-z3'),
    '--max-steps',
    '4',
    '--nproc-per-node',
    '1',
    '--zero-stage',
    '3',
    '--dist-timeout',
    '60',
  ])
  compare('ZeRO-3 × 2 → ZeRO-3 × 1 vs → one process', out('z3x2-to-z3'), out('z3x2-to-one'), [3, 4])

  // The bound is far below what training moves: steps 3-4 change the weights by ≫ 1e-6.
  const before = folderWeights(path.join(out('one'), 'checkpoint-2'))
  const after = folderWeights(path.join(out('one'), 'checkpoint-4'))
  const moved = Math.max(...Object.entries(before).map(([k, v]) => Math.max(...v.map((x, i) => Math.abs(x - after[k]![i]!)))))
  t.ok(moved >= 10 * BOUND, `steps 3-4 move the weights by ${moved.toExponential(2)} ≥ 10 × the bound`)
})

t.test('a rank is not moved silently: --device cuda:N other than cuda:LOCAL_RANK is an error naming the flag', async (t) => {
  const model = makeTrainableModel(t, 3)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 8)
  // Gloo over a named GPU: the device check comes first, before any CUDA is touched, so this runs on any build.
  const r = runCli([
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    path.join(work, 'out'),
    '--max-steps',
    '1',
    '--nproc-per-node',
    '1',
    '--backend',
    'gloo',
    '--device',
    'cuda:1',
  ])
  t.not(r.status, 0, 'refused')
  t.match(
    r.stderr,
    /--device cuda:1: each rank of a multi-process run uses cuda:LOCAL_RANK \(this rank's is cuda:0\); write --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES/,
  )
})
