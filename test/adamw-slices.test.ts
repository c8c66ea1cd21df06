// AdamW and gradient clipping run over large parameters slice by slice (4 Mi elements, so their
// temporaries stay slice-sized); a parameter just past one slice must update exactly like the
// float64 transcription of torch.optim.AdamW, element by element, and its norm be the whole one.
import t from 'tap'

import { Tensor } from '../lib/index'
import { AdamW } from '../lib/train/adamw'

const N = 4 * 1024 * 1024 + 37 // one full slice and a short one
const coef = (i: number) => (((i * 2654435761) % 1000) - 500) / 997 // a deterministic gradient pattern
const start = (i: number) => ((i % 613) - 306) / 311

// Two steps of torch.optim.AdamW on element i in float64, with gradient g both steps.
function reference(p: number, g: number, lr: number): number {
  const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.1]
  let m = 0
  let v = 0
  for (let step = 1; step <= 2; step++) {
    p *= 1 - lr * wd
    m += (1 - b1) * (g - m)
    v = v * b2 + (1 - b2) * g * g
    p -= (lr / (1 - b1 ** step)) * (m / (Math.sqrt(v) / Math.sqrt(1 - b2 ** step) + eps))
  }
  return p
}

for (const dtype of ['float32', 'bfloat16'] as const) {
  t.test(`a ${dtype} parameter of ${N} elements: every element as torch.optim.AdamW, the norm of the whole gradient`, async (t) => {
    const init = Float32Array.from({ length: N }, (_, i) => start(i))
    const g = Float32Array.from({ length: N }, (_, i) => coef(i))
    const p = Tensor.from(init, [N], { dtype, requiresGrad: true })
    const c = Tensor.from(g, [N], { dtype })
    const opt = new AdamW([['w', p]], { weightDecay: 0.1 })
    // The values as the parameter's dtype holds them: the reference starts from those.
    const p0 = p.to('float32').toArray() as Float32Array
    const g0 = c.to('float32').toArray() as Float32Array
    for (let k = 0; k < 2; k++) {
      opt.zeroGrad()
      p.mul(c).sum().backward() // d/dp Σ p·c = c
      if (k === 0) {
        let sq = 0
        for (let i = 0; i < N; i++) sq += g0[i]! * g0[i]!
        const norm = opt.clipGradNorm(0)
        t.ok(Math.abs(norm - Math.sqrt(sq)) <= 1e-9 * Math.sqrt(sq), `gradient norm ${norm}, float64 ${Math.sqrt(sq)}`)
      }
      await opt.step(1e-3)
    }
    // bf16: the fp32 master holds the update; fp32: the parameter itself.
    const got = (dtype === 'bfloat16' ? opt.stateTensors()['master.w']! : p).toArray() as Float32Array
    let worst = 0
    let at = -1
    for (let i = 0; i < N; i++) {
      const want = reference(p0[i]!, g0[i]!, 1e-3)
      const err = Math.abs(got[i]! - want) / (2e-6 * Math.max(1, Math.abs(want)))
      if (err > worst) [worst, at] = [err, i]
    }
    t.ok(worst <= 1, `worst element ${at}: ${got[at]} against ${reference(p0[at]!, g0[at]!, 1e-3)} (${worst.toFixed(2)}× the tolerance)`)
    for (const x of [p, c]) x.dispose()
  })
}
