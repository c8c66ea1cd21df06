// AdamW against a float64 transcription of torch.optim.AdamW, for fp64, fp32 and bf16 (fp32
// master) parameters; gradient clipping; state save/restore.
import t from 'tap'

import { type DType, Tensor } from '../lib/index'
import { AdamW } from '../lib/train/adamw'
import { close, describe } from './helpers/assert'
import { rng } from './helpers/reference'

// torch.optim.AdamW, single-tensor path, in float64.
function referenceAdamW(p0: number[], grads: number[][], lr: number, b1: number, b2: number, eps: number, wd: number) {
  const p = [...p0]
  const m = p.map(() => 0)
  const v = p.map(() => 0)
  grads.forEach((g, k) => {
    const step = k + 1
    const bc1 = 1 - b1 ** step
    const bc2sqrt = Math.sqrt(1 - b2 ** step)
    for (let i = 0; i < p.length; i++) {
      p[i]! *= 1 - lr * wd
      m[i] = m[i]! + (1 - b1) * (g[i]! - m[i]!)
      v[i] = v[i]! * b2 + (1 - b2) * g[i]! * g[i]!
      p[i]! -= (lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / bc2sqrt + eps))
    }
  })
  return p
}

for (const [dtype, rtol] of [
  ['float64', 1e-12],
  ['float32', 2e-6],
] as [DType, number][]) {
  t.test(`matches torch.optim.AdamW (${dtype})`, async (t) => {
    const r = rng(3)
    const p0 = Array.from({ length: 12 }, () => r() * 2 - 1)
    const grads = Array.from({ length: 5 }, () => p0.map(() => r() * 2 - 1))
    const p = Tensor.from(Float64Array.from(p0), [3, 4], { dtype, requiresGrad: true })
    const opt = new AdamW([['w', p]], { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 })
    for (const g of grads) {
      opt.zeroGrad()
      // d/dp Σ p·g = g
      p.mul(Tensor.from(Float64Array.from(g), [3, 4], { dtype }))
        .sum()
        .backward()
      await opt.step(1e-2)
    }
    const want = referenceAdamW(p0, grads, 1e-2, 0.9, 0.95, 1e-8, 0.1)
    const cmp = close(p.to('float64').toArray() as Float64Array, want, rtol, rtol)
    t.ok(cmp.ok, describe(cmp))
    t.equal(opt.stepCount, 5)
  })
}

t.test('bf16 parameters are updated through fp32 master weights', async (t) => {
  const p0 = [0.5, -0.25, 1, 2]
  const p = Tensor.from(Float64Array.from(p0), [4], { dtype: 'bfloat16', requiresGrad: true })
  const opt = new AdamW([['w', p]])
  const grads: number[][] = []
  for (let k = 0; k < 100; k++) {
    opt.zeroGrad()
    p.sum().backward() // gradient 1 everywhere
    grads.push([1, 1, 1, 1])
    await opt.step(1e-4)
  }
  // Each step of 1e-4 is far below bf16 spacing at 1-2 (7.8e-3), so a bf16-only
  // update would round every step away; the fp32 master accumulates the 1e-2 total.
  const master = opt.stateTensors()['master.w']!.toArray() as Float32Array
  const want = referenceAdamW(p0, grads, 1e-4, 0.9, 0.999, 1e-8, 0)
  t.ok(close(master, want, 1e-5).ok, `master ${Array.from(master)}`)
  const rounded = p.to('float32').toArray() as Float32Array
  t.same(Array.from(rounded), Array.from(Tensor.from(Float32Array.from(master), [4], { dtype: 'bfloat16' }).to('float32').toArray() as Float32Array))
  t.not(rounded[3], 2, 'the bf16 weight moved once the master crossed a rounding boundary')
})

t.test('clipGradNorm returns the norm and scales to maxNorm', (t) => {
  const a = Tensor.from(new Float64Array([3, 0]), [2], { requiresGrad: true })
  const b = Tensor.from(new Float64Array([4]), [1], { requiresGrad: true })
  const opt = new AdamW([
    ['a', a],
    ['b', b],
  ])
  a.mul(a).sum().mul(0.5).add(b.mul(b).sum().mul(0.5)).backward() // grads = values: norm 5
  t.ok(Math.abs(opt.clipGradNorm(0) - 5) < 1e-12, 'maxNorm 0 measures only')
  t.same(Array.from(a.grad!.toArray() as Float64Array), [3, 0])
  t.ok(Math.abs(opt.clipGradNorm(1) - 5) < 1e-12)
  const scale = 1 / (5 + 1e-6)
  t.ok(close(a.grad!.toArray() as Float64Array, [3 * scale, 0], 1e-12).ok)
  t.ok(close(b.grad!.toArray() as Float64Array, [4 * scale], 1e-12).ok)
  const c = Tensor.from(new Float64Array([1]), [1], { requiresGrad: true })
  c.mul(Infinity).sum().backward()
  t.equal(new AdamW([['c', c]]).clipGradNorm(1), Infinity, 'non-finite gradients are reported')
  t.end()
})

t.test('clipGradNorm over a strided (transposed) gradient: the ATen path, the same norm and clip', (t) => {
  // A transposed leaf gets a gradient with its strides, which the one-pass CPU kernels do not take.
  const values = Float32Array.from({ length: 12 }, (_, i) => (i % 5) - 2.5)
  const strided = Tensor.from(values, [3, 4]).transpose(0, 1)
  strided.requiresGrad = true
  const dense = Tensor.from(values, [3, 4]).transpose(0, 1).contiguous()
  dense.requiresGrad = true
  for (const p of [strided, dense]) p.mul(p).sum().mul(0.5).backward() // grad = values
  const norm = Math.sqrt(values.reduce((a, x) => a + x * x, 0))
  const got = [strided, dense].map((p) => new AdamW([['p', p]]).clipGradNorm(1))
  for (const n of got) t.ok(Math.abs(n - norm) <= 1e-12 * norm, `norm ${n}, float64 ${norm}`)
  const scale = 1 / (norm + 1e-6)
  for (const p of [strided, dense]) {
    const g = Array.from(p.grad!.contiguous().toArray() as Float32Array)
    const want = Array.from(p.detach().contiguous().toArray() as Float32Array, (x) => x * scale)
    t.ok(close(g, want, 1e-6).ok, 'clipped by maxNorm / (norm + 1e-6)')
  }
  t.end()
})

t.test('state round trip restores the trajectory exactly', async (t) => {
  const run = async (steps: number, restoreAt?: number) => {
    const p = Tensor.from(new Float32Array([1, 2, 3]), [3], { requiresGrad: true })
    let opt = new AdamW([['w', p]], { weightDecay: 0.01 })
    for (let k = 0; k < steps; k++) {
      if (k === restoreAt) {
        const saved = Object.fromEntries(Object.entries(opt.stateTensors()).map(([n, x]) => [n, x.clone()]))
        const count = opt.stepCount
        opt = new AdamW([['w', p]], { weightDecay: 0.01 })
        opt.loadState(saved, count)
      }
      opt.zeroGrad()
      p.mul(p)
        .mul(k + 1)
        .sum()
        .backward()
      await opt.step(0.01)
    }
    return Array.from(p.toArray() as Float32Array)
  }
  t.same(await run(6, 3), await run(6))
  const opt = new AdamW([['w', Tensor.zeros([2])]])
  t.throws(() => opt.loadState({}, 1), /optimizer state: missing tensor 'exp_avg.w'/)
})
