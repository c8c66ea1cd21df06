// The pure parts of data-parallel training: how rows and parameters are split across ranks, the
// launcher's argv, and the checkpoint's optimizer files.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { partitionOwners, shardOf, shardSizes } from '../lib/distributed/data-parallel'
import { withoutFlag, parseNproc } from '../lib/distributed/launcher'
import { optimizerFiles, optimizerShardFile } from '../lib/distributed/optimizer-shards'
import { tempDir } from './helpers/data-fixtures'

t.test('rows: contiguous blocks in rank order, sizes differing by at most one', (t) => {
  t.same(shardSizes(8, 2), [4, 4])
  t.same(shardSizes(5, 2), [3, 2])
  t.same(shardSizes(1, 2), [1, 0], 'a rank may get no row at an epoch end')
  const rows = [10, 11, 12, 13, 14]
  t.same(
    [0, 1, 2].map((r) => shardOf(rows, r, 3)),
    [[10, 11], [12, 13], [14]],
  )
  t.same(
    [0, 1, 2].flatMap((r) => shardOf(rows, r, 3)),
    rows,
    'the blocks concatenate back to the global order',
  )
  t.end()
})

t.test('parameters: contiguous owners, balanced by size', (t) => {
  const numels = [4096, 64, 64, 4096, 64, 64, 4096, 64, 64, 4096, 4096]
  for (const world of [1, 2, 3, 4]) {
    const owners = partitionOwners(numels, world)
    t.same(
      [...owners].sort((a, b) => a - b),
      owners,
      `world ${world}: owners ascend (contiguous runs)`,
    )
    const loads = Array.from({ length: world }, (_, r) => numels.filter((_, i) => owners[i] === r).reduce((a, b) => a + b, 0))
    const total = numels.reduce((a, b) => a + b, 0)
    t.ok(
      loads.every((l) => Math.abs(l - total / world) <= 4096),
      `world ${world}: each rank within one tensor of total/world (${loads.join(', ')})`,
    )
  }
  t.end()
})

t.test('the launcher passes every argument but --nproc-per-node on', (t) => {
  t.same(withoutFlag(['--model', 'm', '--nproc-per-node', '2', '--out', 'o'], '--nproc-per-node'), ['--model', 'm', '--out', 'o'])
  t.same(withoutFlag(['--nproc-per-node=4', '--data', 'a', 'b'], '--nproc-per-node'), ['--data', 'a', 'b'])
  t.equal(parseNproc('3'), 3)
  t.throws(() => parseNproc('0'), /--nproc-per-node 0: expected an integer in \[1, 1024\]/)
  t.throws(() => parseNproc('two'), /--nproc-per-node two/)
  t.end()
})

t.test('a checkpoint needs its whole optimizer state', (t) => {
  const dir = tempDir(t)
  t.same(optimizerFiles(dir), { problem: 'optimizer.safetensors is missing' })
  fs.writeFileSync(path.join(dir, optimizerShardFile(0, 3)), '')
  fs.writeFileSync(path.join(dir, optimizerShardFile(2, 3)), '')
  t.same(optimizerFiles(dir), { problem: 'optimizer-rank1-of-3.safetensors is missing' }, 'a missing shard is named')
  fs.writeFileSync(path.join(dir, optimizerShardFile(1, 3)), '')
  t.same(optimizerFiles(dir), { files: ['optimizer-rank0-of-3.safetensors', 'optimizer-rank1-of-3.safetensors', 'optimizer-rank2-of-3.safetensors'] })
  t.end()
})
