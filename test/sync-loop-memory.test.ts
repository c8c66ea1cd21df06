// A synchronous loop (no await, so Node never runs its deferred finalizers) that disposes its
// tensors must run in flat memory: it used to grow ~0.7 MB per step, ~1.4 GB over 2000 steps.
import { execFileSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

import { Tensor } from '../lib/index'

t.test('2000 synchronous loss+backward steps keep RSS flat', (t) => {
  // A child process: a clean RSS, and the glibc settings the addon applies at load.
  const env = { ...process.env }
  delete env.MALLOC_MMAP_THRESHOLD_
  delete env.GLIBC_TUNABLES
  env.OMP_NUM_THREADS = '1' // speed on a shared machine; the growth did not depend on it
  const out = execFileSync(process.execPath, [...process.execArgv, path.join(__dirname, 'helpers', 'sync-loop-child.ts')], {
    encoding: 'utf8',
    env,
    timeout: 300_000,
  })
  const { growthMB } = JSON.parse(out.trim().split('\n').pop()!) as { growthMB: number }
  t.ok(growthMB < 50, `RSS grew ${growthMB.toFixed(1)} MB over 2000 steps (limit 50)`)
  t.end()
})

// The README's contract: backward() frees the graph's saved tensors before it returns, so a
// second backward through the same graph has nothing left to run on.
t.test('backward releases the saved activations of its graph', (t) => {
  const x = Tensor.randn([4, 8])
  x.requiresGrad = true
  const total = x.logSoftmax(1).sum()
  total.backward()
  t.throws(() => total.backward(), /second time|freed/, 'the graph was released')
  t.end()
})
