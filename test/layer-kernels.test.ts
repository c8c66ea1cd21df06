// The decoder layer's fused CPU kernels (csrc/models/layer_kernels.cc): RMSNorm (+ residual),
// RoPE and SwiGLU against the eager composition in float64 (outputs and gradients, fp32 and bf16,
// odd widths), their fp64 gradients against central differences, and bad inputs.
import t, { type Test } from 'tap'

import { Tensor } from '../lib/index'
import { runOp } from '../lib/core/ops'
import { close, describe } from './helpers/assert'

type Dtype = 'float32' | 'bfloat16' | 'float64'

// A leaf of `dtype` holding standard normal draws · scale (+ shift), requiring grad.
function leaf(shape: number[], dtype: Dtype, scale = 1, shift = 0): Tensor {
  const x = Tensor.randn(shape, { dtype: 'float64' }).mul(scale).add(shift).to(dtype).detach()
  x.requiresGrad = true
  return x
}

// The same values in float64, a separate leaf (for the eager reference).
function asF64(x: Tensor): Tensor {
  const y = x.detach().to('float64').detach()
  y.requiresGrad = true
  return y
}

// cos and sin of random angles [B, T, hd] (the RoPE tables), in float64.
function tables(shape: number[]): [Tensor, Tensor] {
  const angle = Tensor.randn(shape, { dtype: 'float64' }).mul(3).toArray() as Float64Array
  return [Tensor.from(angle.map(Math.cos), shape), Tensor.from(angle.map(Math.sin), shape)]
}

const values = (x: Tensor): Float64Array => x.detach().to('float64').toArray() as Float64Array
const maxAbs = (a: Float64Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0)

// Outputs and the gradients of Σ out·r w.r.t. `inputs`, for a function of the inputs.
function run(f: (xs: Tensor[]) => Tensor, inputs: Tensor[], r: Tensor): { out: Float64Array; grads: Float64Array[] } {
  const out = f(inputs)
  out.to('float64').mul(r).sum().backward()
  return { out: values(out), grads: inputs.map((x) => values(x.grad!)) }
}

// Eager float64 compositions as transformers writes them.
function rmsRef(x: Tensor, w: Tensor, eps: number, plusOne: boolean): Tensor {
  const normed = x.div(x.pow(2).mean(-1, true).add(eps).sqrt())
  return normed.mul(plusOne ? w.add(1) : w)
}
function ropeRef(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const h = x.shape[3]! / 2
  const rotated = Tensor.cat([x.narrow(3, h, h).neg(), x.narrow(3, 0, h)], 3)
  return x.mul(cos.unsqueeze(2)).add(rotated.mul(sin.unsqueeze(2)))
}
function swigluRef(gate: Tensor, up: Tensor): Tensor {
  return gate.mul(gate.sigmoid()).mul(up)
}

const fusedRms =
  (eps: number, plusOne: boolean, residual: boolean) =>
  (xs: Tensor[]): Tensor => {
    const o = runOp('fusedRmsNorm', { input: xs[0]!, residual: residual ? xs[1] : undefined, weight: xs[residual ? 2 : 1]!, eps, plusOne }, 'sync')
    // Both outputs feed the loss, as in a layer (the sum is the next residual).
    return residual ? o.output.add(o.sum!.mul(0.5)) : o.output
  }
const eagerRms =
  (eps: number, plusOne: boolean, residual: boolean) =>
  (xs: Tensor[]): Tensor => {
    const s = residual ? xs[0]!.add(xs[1]!) : xs[0]!
    const y = rmsRef(s, xs[residual ? 2 : 1]!, eps, plusOne)
    return residual ? y.add(s.mul(0.5)) : y
  }

// Relative-to-scale tolerance: fp32 sums of H terms, bf16's 2^-8 through a few roundings.
const tolerance = (dtype: Dtype, width: number): number => (dtype === 'bfloat16' ? 3e-2 : 2e-6 * Math.sqrt(width) + 1e-6)

function compare(
  t: Test,
  what: string,
  got: { out: Float64Array; grads: Float64Array[] },
  want: { out: Float64Array; grads: Float64Array[] },
  tol: number,
): void {
  const c = close(got.out, want.out, tol, tol * maxAbs(want.out))
  t.ok(c.ok, `${what} output: ${describe(c)}`)
  got.grads.forEach((g, i) => {
    const d = close(g, want.grads[i]!, tol, tol * maxAbs(want.grads[i]!))
    t.ok(d.ok, `${what} grad ${i}: ${describe(d)}`)
  })
}

t.test('fused kernels match the eager float64 composition (fp32, bf16, odd widths)', async (t) => {
  Tensor.manualSeed(7)
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const [rows, width] of [
      [7, 37],
      [3, 129],
      [1, 3],
    ] as const) {
      for (const plusOne of [false, true]) {
        for (const residual of [false, true]) {
          const inputs = [leaf([rows, width], dtype, 2), ...(residual ? [leaf([rows, width], dtype)] : []), leaf([width], dtype, 0.5, plusOne ? 0 : 1)]
          const r = Tensor.randn([rows, width], { dtype: 'float64' })
          const got = run(fusedRms(1e-5, plusOne, residual), inputs, r)
          const want = run(eagerRms(1e-5, plusOne, residual), inputs.map(asF64), r)
          compare(t, `rmsNorm ${dtype} [${rows},${width}] plusOne=${plusOne} residual=${residual}`, got, want, tolerance(dtype, width))
        }
      }
    }
    for (const [B, T, heads, hd] of [
      [2, 5, 3, 6],
      [1, 3, 1, 2],
      [1, 2, 2, 130],
    ] as const) {
      const x = leaf([B, T, heads, hd], dtype)
      const [cos, sin] = tables([B, T, hd]).map((c) => c.to(dtype))
      const r = Tensor.randn([B, T, heads, hd], { dtype: 'float64' })
      const got = run((xs) => runOp('fusedRope', { input: xs[0]!, cos: cos!, sin: sin! }, 'sync').output, [x], r)
      const want = run((xs) => ropeRef(xs[0]!, cos!.to('float64'), sin!.to('float64')), [asF64(x)], r)
      compare(t, `rope ${dtype} [${B},${T},${heads},${hd}]`, got, want, tolerance(dtype, 2))
    }
    for (const shape of [[5, 77], [2, 3, 1001], [1]]) {
      // Gates over silu's whole range, large negatives included (exp's clamp).
      const inputs = [leaf(shape, dtype, 6), leaf(shape, dtype)]
      const r = Tensor.randn(shape, { dtype: 'float64' })
      const got = run((xs) => runOp('fusedSwiglu', { gate: xs[0]!, up: xs[1]! }, 'sync').output, inputs, r)
      const want = run((xs) => swigluRef(xs[0]!, xs[1]!), inputs.map(asF64), r)
      compare(t, `swiglu ${dtype} [${shape.join(',')}]`, got, want, tolerance(dtype, 2))
    }
  }
})

// Central differences of L(inputs) = Σ f(inputs)·r at a few coordinates of every input (fp64).
function checkGradient(t: Test, what: string, f: (xs: Tensor[]) => Tensor, inputs: Tensor[]): void {
  const r = Tensor.randn(f(inputs.map((x) => x.detach())).shape, { dtype: 'float64' })
  const analytic = run(f, inputs, r).grads
  const h = 1e-6
  inputs.forEach((x, i) => {
    const base = values(x)
    const n = base.length
    for (const j of [0, Math.floor(n / 3), n - 1]) {
      const at = (delta: number): number => {
        const moved = Float64Array.from(base)
        moved[j] = moved[j]! + delta
        const xs = inputs.map((y, k) => (k === i ? Tensor.from(moved, y.shape) : y.detach()))
        return f(xs).mul(r).sum().item()
      }
      const numeric = (at(h) - at(-h)) / (2 * h)
      const c = close([analytic[i]![j]!], [numeric], 1e-6, 1e-7)
      t.ok(c.ok, `${what}: d/d input${i}[${j}] ${describe(c)}`)
    }
  })
}

t.test('fp64 gradients match central differences', async (t) => {
  Tensor.manualSeed(11)
  for (const plusOne of [false, true]) {
    checkGradient(t, `rmsNorm plusOne=${plusOne}`, fusedRms(1e-6, plusOne, false), [leaf([3, 9], 'float64'), leaf([9], 'float64', 0.5, 1)])
    checkGradient(t, `rmsNorm + residual plusOne=${plusOne}`, fusedRms(1e-6, plusOne, true), [
      leaf([3, 9], 'float64'),
      leaf([3, 9], 'float64'),
      leaf([9], 'float64', 0.5, 1),
    ])
  }
  const [cos, sin] = tables([2, 3, 8])
  checkGradient(t, 'rope', (xs) => runOp('fusedRope', { input: xs[0]!, cos, sin }, 'sync').output, [leaf([2, 3, 2, 8], 'float64')])
  checkGradient(t, 'swiglu', (xs) => runOp('fusedSwiglu', { gate: xs[0]!, up: xs[1]! }, 'sync').output, [leaf([4, 7], 'float64', 3), leaf([4, 7], 'float64')])
})

t.test('bad inputs are input errors naming the argument', async (t) => {
  const x = Tensor.zeros([2, 4])
  const bad: [string, () => unknown, RegExp][] = [
    [
      'fp16 input',
      () => runOp('fusedRmsNorm', { input: x.to('float16'), weight: Tensor.zeros([4], { dtype: 'float16' }), eps: 1e-6 }, 'sync'),
      /input: expected a CPU float32/,
    ],
    ['weight width', () => runOp('fusedRmsNorm', { input: x, weight: Tensor.zeros([3]), eps: 1e-6 }, 'sync'), /weight: expected \[4\]/],
    [
      'weight dtype',
      () => runOp('fusedRmsNorm', { input: x, weight: Tensor.zeros([4], { dtype: 'float64' }), eps: 1e-6 }, 'sync'),
      /weight: expected input's Float/,
    ],
    [
      'residual shape',
      () => runOp('fusedRmsNorm', { input: x, residual: Tensor.zeros([4]), weight: Tensor.zeros([4]), eps: 1e-6 }, 'sync'),
      /residual: expected/,
    ],
    ['negative eps', () => runOp('fusedRmsNorm', { input: x, weight: Tensor.zeros([4]), eps: -1 }, 'sync'), /eps: must be/],
    ['rope rank', () => runOp('fusedRope', { input: x, cos: x, sin: x }, 'sync'), /input: expected \[B, T, heads, even head_dim\]/],
    [
      'rope odd head_dim',
      () => runOp('fusedRope', { input: Tensor.zeros([1, 2, 1, 3]), cos: Tensor.zeros([1, 2, 3]), sin: Tensor.zeros([1, 2, 3]) }, 'sync'),
      /even head_dim/,
    ],
    [
      'rope table',
      () => runOp('fusedRope', { input: Tensor.zeros([1, 2, 1, 4]), cos: Tensor.zeros([1, 3, 4]), sin: Tensor.zeros([1, 2, 4]) }, 'sync'),
      /cos: expected \[1, 2, 4\]/,
    ],
    ['swiglu shapes', () => runOp('fusedSwiglu', { gate: x, up: Tensor.zeros([4, 2]) }, 'sync'), /up: expected gate's shape/],
    ['swiglu dtype', () => runOp('fusedSwiglu', { gate: x, up: x.to('bfloat16') }, 'sync'), /up: expected gate's Float/],
  ]
  for (const [what, f, message] of bad) t.throws(f, { name: 'EdpoInputError', message }, what)
})
