// Every CPU kernel build (baseline SSE2, AVX2, AVX-512), forced in turn with EDPO_CPU_ISA, against
// the fp64 reference: odd vocabularies exercise the vector tails, bf16 the conversions.
import { execFileSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

import { runtime } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type CaseOptions, makeCase, referenceGradient, referenceLoss } from './helpers/reference'

const specs: CaseOptions[] = [
  { pairs: 2, steps: 5, vocab: 7, seed: 21 },
  { pairs: 2, steps: 4, vocab: 1001, seed: 22, spread: 30 },
  { pairs: 1, steps: 6, vocab: 5003, seed: 23, dtype: 'bfloat16' },
  { pairs: 1, steps: 3, vocab: 2053, seed: 24, dtype: 'float16' },
  // Blocks of −inf policy logits (a vocabulary mask) at the start, middle and end of rows, on and
  // across the kernel's 2048-element chunk boundaries: a row whose first chunk is all −inf once
  // restarted its other streams mid-row.
  { pairs: 2, steps: 3, vocab: 5000, seed: 25, policyNegInf: [[0, 2100]] },
  { pairs: 1, steps: 3, vocab: 4103, seed: 26, policyNegInf: [[0, 2048]] },
  { pairs: 1, steps: 3, vocab: 5003, seed: 27, policyNegInf: [[1000, 4500]] },
  { pairs: 1, steps: 3, vocab: 4500, seed: 28, policyNegInf: [[2040, 4500]] },
  {
    pairs: 1,
    steps: 3,
    vocab: 7000,
    seed: 29,
    policyNegInf: [
      [0, 5],
      [2047, 2049],
      [4096, 6500],
    ],
  },
  { pairs: 1, steps: 3, vocab: 5000, seed: 30, dtype: 'bfloat16', policyNegInf: [[0, 4200]] },
  { pairs: 1, steps: 4, vocab: 7, seed: 31, policyNegInf: [[0, 3]] },
]

interface ChildResult {
  S: number[]
  Sref: number[]
  Splus: number[]
  Sminus: number[]
  steps: number[]
  loss: number
  grad: number[]
}

interface AdamWStep {
  dtype: 'float32' | 'bfloat16'
  weights: number[]
}

// The child's parameters (isa-child.ts), one AdamW step in fp64 (torch.optim.AdamW, betas
// (0.9, 0.999), eps 1e-8), then rounded to the parameter's dtype for bf16 (its fp32 master holds
// the unrounded value).
function adamwFirstStep(dtype: AdamWStep['dtype'], lr: number, weightDecay: number): number[] {
  const n = 4099
  const round = (x: number) => (dtype === 'bfloat16' ? bf16(x) : Math.fround(x))
  return Array.from({ length: n }, (_, i) => {
    const p = round(Math.fround(Math.sin(i * 0.37) * 2))
    const g = round(Math.fround(Math.cos(i * 0.11) + 0.05))
    const m = (0.1 * g) / (1 - 0.9)
    const v = 0.001 * g * g
    const denom = Math.sqrt(v) / Math.sqrt(1 - 0.999) + 1e-8
    return round(p * (1 - lr * weightDecay) - lr * (m / denom))
  })
}

// Round to bfloat16, to nearest even (as the kernels and c10 do).
function bf16(x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16
  return f[0]!
}

const best = runtime().cpuKernels
const isas = ['base', 'avx2', 'avx512'].filter((isa) => isa === 'base' || best === 'avx512' || (best === 'avx2' && isa === 'avx2'))

for (const isa of isas) {
  t.test(`CPU kernels: ${isa}`, (t) => {
    const out = execFileSync(process.execPath, [...process.execArgv, path.join(__dirname, 'helpers', 'isa-child.ts'), JSON.stringify(specs)], {
      env: { ...process.env, EDPO_CPU_ISA: isa },
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    })
    const child = JSON.parse(out) as { isa: string; optimizerBefore: string; optimizerIsa: string; results: ChildResult[]; steps: AdamWStep[] }
    t.equal(child.isa, isa, 'the child ran the requested kernels')
    // One probe for every CPU kernel: the optimizer's update has a base and an AVX2 build (an
    // AVX-512 CPU runs the AVX2 one: the update is memory-bound), and the cap reaches it.
    t.equal(child.optimizerBefore, 'none', 'no update before the step')
    t.equal(child.optimizerIsa, isa === 'base' ? 'base' : 'avx2', `the optimizer obeys EDPO_CPU_ISA=${isa}`)
    for (const step of child.steps) {
      // Against the first step in fp64: either build's fp32 arithmetic is within a few ulps of it
      // (1e-6 relative), and a bf16 weight within one bf16 ulp: a master value that differs by an
      // fp32 ulp at a bf16 rounding boundary rounds the other way, and an ulp is up to 2⁻⁷ relative.
      const want = adamwFirstStep(step.dtype, 1e-2, 0.1)
      const cmp = close(step.weights, want, step.dtype === 'bfloat16' ? 2 ** -7 : 1e-6, 1e-7)
      t.ok(cmp.ok, `AdamW ${step.dtype} under ${isa}: ${describe(cmp)}`)
    }
    specs.forEach((spec, i) => {
      const got = child.results[i]!
      const c = makeCase(spec)
      const want = referenceLoss(c, 0.3, 0.01)
      for (const [key, ref] of [
        ['S', want.S],
        ['Sref', want.Sref],
        ['Splus', want.Splus],
        ['Sminus', want.Sminus],
      ] as const) {
        const cmp = close(got[key], ref, 1e-5, 1e-5)
        t.ok(cmp.ok, `V=${spec.vocab} ${spec.dtype ?? 'float32'} ${key}: ${describe(cmp)}`)
      }
      t.same(got.steps, want.steps, `V=${spec.vocab} steps`)
      t.ok(close([got.loss], [want.loss], 1e-5, 1e-7).ok, `V=${spec.vocab} loss`)
      const rtol = spec.dtype === 'bfloat16' ? 8e-3 : spec.dtype === 'float16' ? 1e-3 : 1e-5
      const g = close(got.grad, referenceGradient(c, 0.3, 0.01), rtol, 1e-7)
      t.ok(g.ok, `V=${spec.vocab} gradient: ${describe(g)}`)
    })
    t.end()
  })
}
