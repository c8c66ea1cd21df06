// The chunked ops' default chunk follows the device: about 2^25 logits per chunk and model on the
// CPU, 2^28 on a GPU in whole 64-row tiles (on the H200 a 261-row chunk at V = 128256 cost 2.63× the
// materialised op's time, 2048 rows 1.42×). `edpo plan` sizes the loss's logits with the same
// default (test/plan.test.ts).
import t from 'tap'

import { ops } from '../lib/index'

t.test('the default per vocabulary and device', (t) => {
  // CPU: floor(2^25 / V), at least 16.
  for (const [V, rows] of [
    [7, 4_793_490],
    [50_257, 667],
    [128_256, 261],
    [4_000_000, 16],
  ] as const)
    t.equal(ops.chunkTokensDefault(V), rows, `cpu, V = ${V}`)
  t.equal(ops.chunkTokensDefault(128_256, 'cpu'), 261)
  // GPU: floor(2^28 / V) rounded down to 64 rows, at least 64; 'cuda' and 'cuda:N' alike, with or without a CUDA build.
  for (const [V, rows] of [
    [7, 38_347_904],
    [50_257, 5_312],
    [128_256, 2_048],
    [256_000, 1_024],
    [4_000_000, 64],
  ] as const) {
    t.equal(ops.chunkTokensDefault(V, 'cuda'), rows, `cuda, V = ${V}`)
    t.equal(rows % 64, 0)
  }
  t.equal(ops.chunkTokensDefault(128_256, 'cuda:3'), 2_048)
  t.end()
})

t.test('bad arguments are named', (t) => {
  t.throws(() => ops.chunkTokensDefault(0), /vocab/)
  t.throws(() => ops.chunkTokensDefault(1.5), /vocab/)
  t.throws(() => ops.chunkTokensDefault(128_256, 'tpu'), /device: invalid device 'tpu'/)
  t.end()
})
