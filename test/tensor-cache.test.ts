// The CPU allocator's cache of large tensor blocks (csrc/js_memory.cc, Linux): a freed block of
// ≥ 256 KiB is kept mapped and handed to the next request of its length; a miss maps a new block
// or resizes the cached one nearest in length, releasing cached blocks so that live + cached bytes
// stay under the peak of live tensor bytes + 1/16. The live/peak counts stay exact, and every tensor gets
// its own memory. This file never calls resetPeakMemory, so peakTensorBytes is the process's high
// water mark, the cache's bound.
import { execFileSync } from 'node:child_process'

import t from 'tap'

import { Tensor } from '../lib/index'
import { memoryStats } from '../lib/core/memory'

const linux = process.platform === 'linux'
const MiB = 1024 * 1024
// Page rounding and the 64-byte header: a block maps less than a page + 64 bytes more than its tensor.
const ROUNDING = linux ? Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' })) + 64 : 0

interface Cache {
  tensors: number
  peak: number
  cached: number
  hits: number
  misses: number
}
function stats(): Cache {
  const s = memoryStats()
  return { tensors: s.tensorBytes, peak: s.peakTensorBytes, cached: s.cachedBytes ?? 0, hits: s.cacheHits ?? 0, misses: s.cacheMisses ?? 0 }
}

function allEqual(x: Tensor, value: number): boolean {
  return (x.toArray() as Float32Array).every((v) => v === value)
}

t.test('a request above the peak releases the cached blocks', { skip: !linux && 'the block cache is Linux-only' }, (t) => {
  const blocks = Array.from({ length: 8 }, (_, k) => Tensor.full([65536], k)) // 256 KiB each
  for (const x of blocks) x.dispose()
  const s0 = stats()
  t.ok(s0.cached >= 8 * 256 * 1024, `the freed blocks are cached (${s0.cached} bytes)`)
  // More than the peak (+ 1/16) leaves room for: the cache must give back all it holds (one block may be resized into it).
  const floats = Math.ceil((s0.peak + s0.peak / 16 - s0.tensors + 4 * MiB) / 4)
  const big = Tensor.full([floats], 1)
  const s1 = stats()
  t.equal(s1.cached, 0, 'nothing left in the cache')
  t.equal(s1.peak, s0.tensors + floats * 4, 'a new peak, counted exactly')
  t.ok(allEqual(big, 1), 'the new block holds its values')
  big.dispose()
  t.end()
})

t.test('a freed large block is reused by the next request of its length', { skip: !linux && 'the block cache is Linux-only' }, (t) => {
  const floats = MiB / 4
  const a = Tensor.full([floats], 3)
  const s0 = stats()
  a.dispose()
  const s1 = stats()
  t.equal(s1.tensors, s0.tensors - MiB, 'the live count drops by the tensor bytes, exactly')
  const block = s1.cached - s0.cached
  t.ok(block >= MiB && block <= MiB + ROUNDING, `the freed block (${block} bytes mapped) went into the cache`)
  const b = Tensor.full([floats], 4)
  const s2 = stats()
  t.equal(s2.cached, s1.cached - block, 'the request took it back out of the cache')
  t.equal(s2.hits, s1.hits + 1, 'a cache hit')
  t.equal(s2.misses, s1.misses, 'no miss')
  t.equal(s2.tensors, s0.tensors, 'the live count is back, exactly')
  t.ok(allEqual(b, 4), 'the reused block holds the new values')
  b.dispose()

  const small = Tensor.full([1000], 1)
  const s3 = stats()
  small.dispose()
  t.equal(stats().cached, s3.cached, 'small blocks stay with malloc: nothing cached')
  t.end()
})

t.test('tensors in cached blocks do not alias each other', { skip: !linux && 'the block cache is Linux-only' }, (t) => {
  const floats = (2 * MiB) / 4
  const first = [Tensor.full([floats], 1), Tensor.full([floats], 2)]
  for (const x of first) x.dispose()
  const hits = stats().hits
  const c = Tensor.full([floats], 5)
  const d = Tensor.full([floats], 9)
  t.equal(stats().hits, hits + 2, 'both came from the cache')
  t.ok(allEqual(c, 5), 'the first holds its values after the second was written')
  t.ok(allEqual(d, 9), 'the second holds its own')
  // A different length: served from the cached blocks resized (or new ones), never an alias.
  const e = Tensor.full([floats + 4096], 7)
  const f = Tensor.full([floats - 4096], 8)
  c.dispose()
  d.dispose()
  const g = Tensor.full([floats + 8192], 6)
  t.ok(allEqual(e, 7) && allEqual(f, 8) && allEqual(g, 6), 'resized and new blocks hold their own values')
  for (const x of [e, f, g]) x.dispose()
  t.end()
})

t.test('live + cached bytes stay under the peak of live bytes + 1/16; the counts stay exact', { skip: !linux && 'the block cache is Linux-only' }, (t) => {
  const base = stats().tensors
  let seed = 12345
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  const live: { x: Tensor; value: number }[] = []
  let liveBytes = 0
  let blocks = 0
  let worst = -Infinity
  let exact = true
  for (let i = 0; i < 400; i++) {
    if (live.length > 0 && (live.length > 24 || random() < 0.45)) {
      const { x } = live.splice(Math.floor(random() * live.length), 1)[0]!
      liveBytes -= x.numel * 4
      x.dispose()
    } else {
      // 256 KiB to 4 MiB, from a few repeating shapes (as a training loop asks) and odd ones
      const floats = random() < 0.5 ? [65536, 262144, 1048576][Math.floor(random() * 3)]! : 65536 + Math.floor(random() * 983040)
      const x = Tensor.full([floats], i)
      liveBytes += floats * 4
      live.push({ x, value: i })
    }
    const s = stats()
    if (s.tensors !== base + liveBytes) exact = false
    blocks = Math.max(blocks, live.length)
    // What rounding to pages adds: each block maps < a page + 64 bytes beyond its tensor.
    worst = Math.max(worst, s.tensors + s.cached - (s.peak + Math.floor(s.peak / 16) + blocks * ROUNDING))
  }
  t.ok(exact, 'tensorBytes equals the live tensors to the byte after every step')
  t.ok(worst <= 0, `live + cached ≤ peak live × 17/16 + page rounding (worst margin ${worst} bytes)`)
  t.ok(
    live.every(({ x, value }) => allEqual(x, value)),
    'every live tensor still holds the value it was filled with',
  )
  for (const { x } of live) x.dispose()
  t.equal(stats().tensors, base, 'all freed: the live count is back to where it started')
  t.end()
})

t.test(
  'blocks freed and taken on worker threads (async backward) while the JS thread allocates',
  { skip: !linux && 'the block cache is Linux-only' },
  async (t) => {
    const base = stats().tensors
    const n = 512
    const graphs = Array.from({ length: 4 }, (_, k) => {
      const x = Tensor.full([n, n], k + 1)
      x.requiresGrad = true
      return { x, loss: x.mul(x).sum() }
    })
    const running = Promise.all(graphs.map((g) => g.loss.backwardAsync()))
    let ok = true
    for (let i = 0; i < 50; i++) {
      const y = Tensor.full([n * n + 1024 * (i % 3)], i)
      ok &&= allEqual(y, i)
      y.dispose()
    }
    await running
    t.ok(ok, 'the JS thread’s tensors held their values')
    for (const [k, g] of graphs.entries()) {
      const grad = g.x.grad!
      t.ok(allEqual(grad, 2 * (k + 1)), `graph ${k}: d/dx sum(x²) = 2x`)
      grad.dispose()
      g.loss.dispose()
      g.x.dispose()
    }
    t.equal(stats().tensors, base, 'everything freed: the live count is back')
  },
)
