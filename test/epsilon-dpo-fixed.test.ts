// A hand-computable case (V = 3) with one pair of each step kind.
import t from 'tap'

import { ops, Tensor } from '../lib/index'

// B = 3 pairs, T = 1, V = 3, label 0 everywhere, reference logits all zero, β = 0.1, ε = 0.01.
// Chosen policy rows are [0,0,0], so lp = −ln 3 under every mixing; S_ref = −ln 3 for every row,
// so ρ_ref = 0 and z_i = ρ_i. Rejected policy rows are [x,0,0], with lp(x) = x − ln(eˣ + 2),
// increasing in x; under the mixings the rejected logit becomes (1+ε)x (plus) and (1−ε)x (minus).
//  pair 0: x = ln 2  → lp = −ln 2; larger |x| under "plus": lp⁺ > lp > lp⁻, so
//          ρ⁺ < ρ < ρ⁻ → s = −1, β₀ = 0.1/0.99; z₀ = −ln 3 + ln 2 = ln(2/3) = −0.405465108
//          L₀ = log(1 + exp(−β₀z₀)) = 0.713834877
//  pair 1: x = −ln 2 → lp = −ln 2 − ln 2.5 = −ln 5; now lp⁺ < lp < lp⁻, so ρ⁺ > ρ > ρ⁻ → s = +1,
//          β₁ = 0.1/1.01; z₁ = ln(5/3) = 0.510825624, L₁ = log(1 + exp(−β₁z₁)) = 0.668178501
//  pair 2: x = 0 → all three ratios are 0: no strict order → s = 0, β₂ = 0.1, L₂ = ln 2 = 0.693147181
//  loss = (L₀ + L₁ + L₂)/3 = 0.691720186
t.test('V=3 worked example', (t) => {
  const ln2 = Math.log(2)
  const policy = new Float64Array([0, 0, 0, 0, 0, 0, 0, 0, 0, ln2, 0, 0, -ln2, 0, 0, 0, 0, 0])
  const out = ops.epsilonDpoLoss({
    policyLogits: Tensor.from(policy, [6, 1, 3]),
    referenceLogits: Tensor.zeros([6, 1, 3], { dtype: 'float64' }),
    labels: Tensor.zeros([6, 1], { dtype: 'int64' }),
    lossMask: Tensor.from(new Uint8Array(6).fill(1), [6, 1], { dtype: 'bool' }),
    beta: 0.1,
    epsilon: 0.01,
  })
  t.same(Array.from(out.steps.toArray() as BigInt64Array, Number), [-1, 1, 0])
  const betas = Array.from(out.betas.toArray() as Float64Array)
  t.ok(Math.abs(betas[0]! - 0.1 / 0.99) < 1e-15 && Math.abs(betas[1]! - 0.1 / 1.01) < 1e-15 && betas[2] === 0.1)
  t.ok(Math.abs(out.loss.item() - 0.691720186) < 1e-9, `loss ${out.loss.item()}`)
  const rejected = Array.from(out.rejectedLogps.toArray() as Float64Array)
  t.ok(Math.abs(rejected[0]! + ln2) < 1e-12 && Math.abs(rejected[1]! + Math.log(5)) < 1e-12)
  t.end()
})
