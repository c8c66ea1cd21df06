// The Tensor API: creation and dtype conversion, host copies, autograd, disposal, bad input.
import t from 'tap'

import { EdpoInputError, EdpoNativeError, runtime, Tensor } from '../lib/index'

t.test('from() keeps or converts the dtype', (t) => {
  const f = Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3])
  t.same(f.shape, [2, 3])
  t.equal(f.dtype, 'float32')
  t.equal(f.device, 'cpu')
  t.equal(f.numel, 6)
  t.same(Array.from(f.toArray() as Float32Array), [1, 2, 3, 4, 5, 6])

  // bf16 keeps 8 mantissa bits: 1 + 2^-9 rounds to 1, 1 + 2^-7 survives.
  const b = Tensor.from(new Float32Array([1 + 2 ** -9, 1 + 2 ** -7, -3.5]), [3], { dtype: 'bfloat16' })
  t.equal(b.dtype, 'bfloat16')
  t.same(Array.from(b.to('float32').toArray() as Float32Array), [1, 1 + 2 ** -7, -3.5])
  t.ok(b.toArray() instanceof Uint16Array, 'bf16 toArray gives raw bits')
  t.equal((b.toArray() as Uint16Array)[2], 0xc060, 'bits of -3.5 in bf16')

  const h = Tensor.from(new Float64Array([0.1, 65504, 1e-7]), [3], { dtype: 'float16' })
  const back = h.to('float32').toArray() as Float32Array
  t.ok(Math.abs(back[0]! - 0.1) < 1e-4 && back[1] === 65504 && back[2]! > 0)

  const i = Tensor.from(new BigInt64Array([1n, -2n, 3n]), [3])
  t.equal(i.dtype, 'int64')
  t.same(Array.from(i.toArray() as BigInt64Array), [1n, -2n, 3n])
  t.same(
    Array.from(
      Tensor.from(new Int32Array([7, 8]), [2])
        .to('float64')
        .toArray() as Float64Array,
    ),
    [7, 8],
  )
  t.same(Array.from(Tensor.from(new Uint8Array([0, 1, 2]), [3], { dtype: 'bool' }).toArray() as Uint8Array), [0, 1, 1])
  t.equal(Tensor.from(new Float32Array([2.5]), []).item(), 2.5)
  t.end()
})

t.test('autograd from TS: backward fills grad', (t) => {
  const x = Tensor.from(new Float64Array([1, 2, 3]), [3], { requiresGrad: true })
  t.equal(x.requiresGrad, true)
  t.equal(x.grad, undefined)
  x.mul(x).sum().backward() // d/dx Σx² = 2x
  t.same(Array.from(x.grad!.toArray() as Float64Array), [2, 4, 6])
  x.zeroGrad()
  t.equal(x.grad, undefined)
  t.end()
})

t.test('backwardAsync runs off the JS thread and gives the same gradient', async (t) => {
  const x = Tensor.from(new Float32Array([0.5, -1]), [2], { requiresGrad: true })
  await x.exp().sum().backwardAsync()
  const g = x.grad!.toArray() as Float32Array
  t.ok(Math.abs(g[0]! - Math.exp(0.5)) < 1e-6 && Math.abs(g[1]! - Math.exp(-1)) < 1e-6)
})

t.test('elementwise ops and reductions agree with plain arithmetic', (t) => {
  const a = Tensor.from(new Float64Array([1, 2, 3, 4]), [2, 2])
  t.same(Array.from(a.add(1).mul(2).sub(a).div(2).toArray() as Float64Array), [1.5, 2, 2.5, 3])
  t.same(Array.from(a.sum(1).toArray() as Float64Array), [3, 7])
  t.same(Array.from(a.amax(0).toArray() as Float64Array), [3, 4])
  t.same(Array.from(a.transpose(0, 1).contiguous().toArray() as Float64Array), [1, 3, 2, 4])
  const ls = a.logSoftmax(1).exp().sum(1).toArray() as Float64Array
  // fp64 log-softmax, exp and a sum: a few ulps (the vectorised exp differs by ISA), so 4e-15 ≈ 18 ulps.
  t.ok(Math.abs(ls[0]! - 1) < 4e-15 && Math.abs(ls[1]! - 1) < 4e-15)
  t.same(Array.from(a.matmul(a).toArray() as Float64Array), [7, 10, 15, 22])
  t.end()
})

t.test('bad input names the argument', (t) => {
  t.throws(() => Tensor.from(new Float32Array(5), [2, 3]), /data: has 5 elements but shape \[2, 3\] needs 6/)
  t.throws(() => Tensor.from(new Float32Array(6), [2, -3]), EdpoInputError)
  t.throws(() => Tensor.from(new Float32Array(6), [2, 3], { dtype: 'float8' as 'float32' }), /opts.dtype/)
  t.throws(() => Tensor.from(new Float32Array(6), [2, 3], { device: 'tpu' }), /opts.device/)
  t.throws(() => Tensor.from([1, 2] as unknown as Float32Array, [2]), /data: expected Float32Array/)
  t.throws(() => Tensor.from(new Int32Array(2), [2], { requiresGrad: true }), /requiresGrad/)
  t.throws(() => Tensor.zeros([2, 2]).item(), /item: expected a tensor with one element/)
  t.throws(() => Tensor.zeros([2, 2]).matmul(Tensor.zeros([3, 3])), EdpoNativeError)
  t.throws(() => Tensor.zeros([2]).sum().backward(), /backward: the tensor does not require grad/)
  if (!runtime().cudaAvailable) t.throws(() => Tensor.zeros([2], { device: 'cuda' }), EdpoNativeError)
  t.end()
})

t.test('dispose frees the tensor; later use is an error', (t) => {
  const x = Tensor.zeros([1000, 1000])
  t.equal(x.disposed, false)
  x.dispose()
  t.equal(x.disposed, true)
  t.throws(() => x.shape, /the tensor was disposed/)
  t.throws(() => x.add(1), /disposed/)
  x.dispose() // twice is harmless
  t.end()
})

t.test('runtime reports the engine and its threads', (t) => {
  const r = runtime()
  t.match(r.libtorchVersion, /^\d+\.\d+/)
  t.ok(r.threads >= 1)
  t.ok(r.addonPath?.endsWith('.node'))
  t.end()
})
