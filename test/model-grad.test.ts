// Autograd through CausalLM.forward: parameter grads match finite differences (fp64 model),
// gradient checkpointing gives identical grads, bf16 runs forward+backward, clone() is frozen.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type Arch, ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-model-grad-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
const prompt = ids([
  [5, 17, 3, 99, 42, 8],
  [11, 4, 88, 23, 2, 0],
])
const mask = ids([
  [1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 0],
])

async function load(arch: Arch, dtype: 'float32' | 'float64' | 'bfloat16' = 'float32', overrides = {}): Promise<CausalLM> {
  const config = tinyConfig(arch, overrides)
  const dir = writeTiny(path.join(root, `${arch}-${JSON.stringify(overrides).replace(/\W+/g, '')}`), config, tinyWeights(config, 5))
  return CausalLM.fromPretrained(dir, { dtype })
}

// A scalar loss touching every logit: Σ logits · r, r fixed.
function loss(m: CausalLM, r: Tensor): Tensor {
  return m.forward(prompt, { attentionMask: mask }).logits.mul(r).sum()
}

function weightsFor(m: CausalLM, dtype: 'float32' | 'float64' | 'bfloat16'): Tensor {
  Tensor.manualSeed(99)
  return Tensor.randn([2, 6, m.config.vocab_size], { dtype })
}

t.test('backward fills every parameter grad; it matches central differences (fp64)', async (t) => {
  for (const arch of ['llama', 'gemma2'] as const) {
    const m = await load(arch, 'float64', arch === 'llama' ? { attention_bias: true, mlp_bias: true, tie_word_embeddings: true } : {})
    m.train()
    const r = weightsFor(m, 'float64')
    const l = loss(m, r)
    t.ok(l.requiresGrad, 'loss has a graph')
    l.backward()
    const params = m.namedParameters()
    for (const [name, p] of params) {
      const g = p.grad
      if (!g) {
        t.fail(`${arch} ${name}: no grad`)
        continue
      }
      t.same(g.shape, p.shape, `${arch} ${name} grad shape`)
    }
    const probes: [string, number][] = [
      ['model.embed_tokens.weight', 17 * 64 + 3],
      ['model.layers.0.self_attn.q_proj.weight', 5],
      ['model.layers.1.self_attn.k_proj.weight', 77],
      ['model.layers.0.self_attn.v_proj.weight', 130],
      ['model.layers.1.input_layernorm.weight', 9],
      ['model.layers.0.mlp.down_proj.weight', 200],
      ['model.norm.weight', 3],
    ]
    if (arch === 'llama') probes.push(['model.layers.0.self_attn.o_proj.bias', 4], ['model.layers.1.mlp.gate_proj.bias', 2])
    if (arch === 'gemma2') probes.push(['model.layers.0.post_feedforward_layernorm.weight', 11])
    const h = 1e-6
    for (const [name, index] of probes) {
      const p = params.get(name)!
      const analytic = (p.grad!.toArray() as Float64Array)[index]!
      const bump = (delta: number) => {
        const d = new Float64Array(p.numel)
        d[index] = delta
        p.addInPlace(Tensor.from(d, p.shape))
      }
      bump(h)
      const up = loss(m, r).item()
      bump(-2 * h)
      const down = loss(m, r).item()
      bump(h)
      const numeric = (up - down) / (2 * h)
      const c = close([analytic], [numeric], 1e-5, 1e-7)
      t.ok(c.ok, `${arch} ${name}[${index}]: ${describe(c)}`)
    }
  }
})

t.test('gradient checkpointing gives the same grads as keeping activations', async (t) => {
  for (const arch of ['llama', 'gemma2'] as const) {
    const grads: Float32Array[][] = []
    for (const checkpointing of [false, true]) {
      const m = await load(arch)
      m.train().setGradientCheckpointing(checkpointing)
      loss(m, weightsFor(m, 'float32')).backward()
      grads.push([...m.namedParameters().values()].map((p) => p.grad!.toArray() as Float32Array))
    }
    grads[0]!.forEach((g, i) => {
      // The recomputed forward is the same arithmetic, but a weight used twice (tied embeddings) may
      // accumulate its gradient terms in another order: fp32 rounding relative to the largest term.
      const maxAbs = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
      const c = close(grads[1]![i]!, g, 1e-6, 1e-6 * maxAbs)
      if (!c.ok) t.fail(`${arch} parameter ${i}: ${describe(c)}`)
    })
    t.pass(`${arch}: ${grads[0]!.length} parameter grads agree`)
  }
})

t.test('bf16 forward + backward runs and gives finite bf16 grads', async (t) => {
  const m = await load('qwen2', 'bfloat16')
  m.train().setGradientCheckpointing(true)
  const out = m.forward(prompt, { attentionMask: mask })
  t.equal(out.logits.dtype, 'bfloat16')
  out.logits.mul(weightsFor(m, 'bfloat16')).sum().backward()
  for (const [name, p] of m.namedParameters()) {
    const g = p.grad!
    t.equal(g.dtype, 'bfloat16', `${name} grad dtype`)
    if (!(g.to('float32').isfinite().sum().item() === g.numel)) t.fail(`${name}: non-finite grad`)
  }
  const l2 = m.forward(prompt).logits.to('float32').abs().sum().item()
  t.ok(Number.isFinite(l2))
})

t.test('clone() is a frozen, independent copy', async (t) => {
  const m = await load('llama')
  const ref = m.clone()
  t.ok(
    [...m.namedParameters().values()].every((p) => p.requiresGrad),
    'policy parameters require grad',
  )
  t.ok(
    [...ref.namedParameters().values()].every((p) => !p.requiresGrad),
    'reference parameters are frozen',
  )
  const before = ref.forward(prompt).logits
  t.notOk(before.requiresGrad, 'reference forward builds no graph')
  t.same(Array.from(before.toArray() as Float32Array), Array.from(m.forward(prompt).logits.toArray() as Float32Array))
  m.namedParameters().get('model.norm.weight')!.mulInPlace(2)
  t.same(Array.from(ref.forward(prompt).logits.toArray() as Float32Array), Array.from(before.toArray() as Float32Array), 'unchanged by policy edits')
  const hidden = await ref.forwardAsync(prompt)
  t.same(hidden.hidden.shape, [2, 6, 64])
})
