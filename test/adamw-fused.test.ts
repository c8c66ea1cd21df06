// The CPU optimizer step runs as one fused pass per parameter (csrc/ops/cpu/optimizer_kernels.cc):
// every dtype it takes, both of ATen's lerp forms (1 − β1 below and above 0.5), lengths that split
// into several thread-pool tasks and leave vector tails, against the float64 transcription of
// torch.optim.AdamW; and the fp64 gradient norm against a float64 sum.
import t from 'tap'

import { type DType, Tensor } from '../lib/index'
import { adamwStepAsync } from '../lib/core/ops'
import { AdamW } from '../lib/train/adamw'

const N = 3 * 32768 + 13 // three tasks of the kernel's grain and an odd tail
const start = (i: number) => ((i % 613) - 306) / 311
const grad = (i: number, k: number) => ((((i + 7 * k) * 2654435761) % 1000) - 500) / 997

// torch.optim.AdamW (single-tensor path) on one element in float64.
function reference(p: number, gs: number[], lr: number, b1: number, b2: number, eps: number, wd: number): number {
  let m = 0
  let v = 0
  gs.forEach((g, k) => {
    const step = k + 1
    p *= 1 - lr * wd
    m += (1 - b1) * (g - m)
    v = v * b2 + (1 - b2) * g * g
    p -= (lr / (1 - b1 ** step)) * (m / (Math.sqrt(v) / Math.sqrt(1 - b2 ** step) + eps))
  })
  return p
}

// Relative tolerance of the updated value (state dtype): fp32 arithmetic over 3 steps, a few ulp each.
const RTOL: Record<string, number> = { float64: 1e-12, float32: 2e-6, bfloat16: 2e-6, float16: 2e-6 }

for (const dtype of ['float64', 'float32', 'bfloat16', 'float16'] as DType[]) {
  for (const beta1 of [0.9, 0.3]) {
    t.test(`${dtype}, β1 = ${beta1}: ${N} elements as torch.optim.AdamW`, async (t) => {
      const p = Tensor.from(
        Float64Array.from({ length: N }, (_, i) => start(i)),
        [N],
        { dtype, requiresGrad: true },
      )
      const p0 = p.to('float64').toArray() as Float64Array
      const opt = new AdamW([['w', p]], { betas: [beta1, 0.95], eps: 1e-8, weightDecay: 0.1 })
      const applied: Float64Array[] = []
      for (let k = 0; k < 3; k++) {
        const c = Tensor.from(
          Float64Array.from({ length: N }, (_, i) => grad(i, k)),
          [N],
          { dtype },
        )
        applied.push(c.to('float64').toArray() as Float64Array) // the gradient as the dtype holds it
        opt.zeroGrad()
        p.mul(c).sum().backward() // d/dp Σ p·c = c
        await opt.step(1e-2)
        c.dispose()
      }
      const reduced = dtype === 'bfloat16' || dtype === 'float16'
      const state = reduced ? opt.stateTensors()['master.w']! : p
      const got = state.to('float64').toArray() as Float64Array
      let worst = 0
      let at = 0
      for (let i = 0; i < N; i++) {
        const want = reference(
          p0[i]!,
          applied.map((g) => g[i]!),
          1e-2,
          beta1,
          0.95,
          1e-8,
          0.1,
        )
        const err = Math.abs(got[i]! - want) / (RTOL[dtype]! * Math.max(1, Math.abs(want)))
        if (err > worst) [worst, at] = [err, i]
      }
      t.ok(worst <= 1, `worst element ${at}: ${got[at]} (${worst.toFixed(2)}× the tolerance)`)
      if (reduced) {
        // The parameter is the master rounded to its dtype, element for element.
        const rounded = state.to(dtype).to('float64').toArray() as Float64Array
        const param = p.to('float64').toArray() as Float64Array
        let differ = 0
        for (let i = 0; i < N; i++) if (param[i] !== rounded[i]) differ++
        t.equal(differ, 0, 'param = round(master)')
      }
    })
  }
}

t.test('a parameter the fused pass does not take (non-contiguous state) still updates as torch', async (t) => {
  // Moments that are transposed views: the op runs the ATen composition for this parameter.
  const p = Tensor.from(
    Float64Array.from({ length: 12 }, (_, i) => start(i)),
    [3, 4],
    { dtype: 'float32', requiresGrad: true },
  )
  const p0 = p.to('float64').toArray() as Float64Array
  const expAvg = Tensor.zeros([4, 3], { dtype: 'float32' }).transpose(0, 1)
  const expAvgSq = Tensor.zeros([4, 3], { dtype: 'float32' }).transpose(0, 1)
  const gs: number[][] = []
  for (let k = 0; k < 2; k++) {
    const g = Array.from({ length: 12 }, (_, i) => grad(i, k))
    gs.push(g)
    p.zeroGrad()
    p.mul(Tensor.from(Float64Array.from(g), [3, 4], { dtype: 'float32' }))
      .sum()
      .backward()
    await adamwStepAsync({
      params: [p],
      master: [null],
      expAvg: [expAvg],
      expAvgSq: [expAvgSq],
      step: k + 1,
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.1,
    })
  }
  const got = p.to('float64').toArray() as Float64Array
  let worst = 0
  for (let i = 0; i < 12; i++) {
    const want = reference(
      p0[i]!,
      gs.map((g) => Math.fround(g[i]!)),
      1e-2,
      0.9,
      0.999,
      1e-8,
      0.1,
    )
    worst = Math.max(worst, Math.abs(got[i]! - want) / (2e-6 * Math.max(1, Math.abs(want))))
  }
  t.ok(worst <= 1, `every element within 2e-6 (worst ${worst.toFixed(2)}× the tolerance)`)
  t.notSame(Array.from(expAvg.to('float64').toArray() as Float64Array), new Array(12).fill(0), 'the strided moments were updated in place')
})

for (const dtype of ['float64', 'float32', 'bfloat16', 'float16'] as DType[]) {
  t.test(`clipGradNorm over ${dtype} gradients: the fp64 norm of every element, clipping only above maxNorm`, (t) => {
    const sizes = [N, 5, 40000]
    const params = sizes.map((n, j) =>
      Tensor.from(
        Float64Array.from({ length: n }, (_, i) => start(i + j)),
        [n],
        { dtype, requiresGrad: true },
      ),
    )
    const coefs = sizes.map((n, j) =>
      Tensor.from(
        Float64Array.from({ length: n }, (_, i) => grad(i, j)),
        [n],
        { dtype },
      ),
    )
    params.forEach((p, j) => p.mul(coefs[j]!).sum().backward())
    const held = params.map((p) => p.grad!.to('float64').toArray() as Float64Array)
    let sq = 0
    for (const g of held) for (const x of g) sq += x * x
    const norm = Math.sqrt(sq)
    const opt = new AdamW(params.map((p, j) => [`p${j}`, p] as [string, Tensor]))
    // fp64 sums of ~2e5 terms in another order: ~n·1.1e-16 relative.
    t.ok(Math.abs(opt.clipGradNorm(0) - norm) <= 1e-10 * norm, 'maxNorm 0: the norm')
    t.ok(Math.abs(opt.clipGradNorm(2 * norm) - norm) <= 1e-10 * norm, 'maxNorm above the norm: the norm')
    t.same(
      params.map((p) => Array.from(p.grad!.to('float64').toArray() as Float64Array)),
      held.map((g) => Array.from(g)),
      'not clipped',
    )
    opt.clipGradNorm(norm / 4)
    const scale = norm / 4 / (norm + 1e-6)
    const after = params.map((p) => p.grad!.to('float64').toArray() as Float64Array)
    // The scaled gradient rounded to its dtype: within an ulp of that dtype, or (fp64) within the
    // scale's own error, which follows the norm's sum order (1e-10 above).
    const ulp: Record<string, number> = { float64: 1e-10, float32: 1.2e-7, bfloat16: 7.9e-3, float16: 9.8e-4 }
    let worst = 0
    held.forEach((g, j) => g.forEach((x, i) => (worst = Math.max(worst, Math.abs(after[j]![i]! - x * scale) / Math.max(Math.abs(x * scale), 1e-30)))))
    t.ok(worst <= ulp[dtype]!, `clipped to maxNorm: worst relative error ${worst}`)
    t.end()
  })
}
