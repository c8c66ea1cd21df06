// CausalLM logits against the independent fp64 reference (test/helpers/hf-reference.ts) for every
// architecture: masks, right and left padding, llama3 rope scaling, tied/untied heads, sliding
// windows shorter than the sequence, gemma2 soft-capping.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t, { type Test } from 'tap'

import { CausalLM, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { type RefConfig, referenceLogits } from './helpers/hf-reference'
import { type Arch, hostWeights, ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-model-ref-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))

const rows = [
  [5, 17, 3, 99, 42, 8, 61, 7, 30],
  [11, 4, 88, 23, 2, 70, 9, 0, 0], // right padded: last two are padding
]
const rightPad = [
  [1, 1, 1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 1, 1, 0, 0],
]

// Compares logits of rows at positions where mask = 1 (padding queries are unspecified).
function compare(t: Test, got: Float64Array | Float32Array, want: Float64Array, mask: number[][], V: number, what: string) {
  const g: number[] = [],
    w: number[] = []
  mask.forEach((r, b) =>
    r.forEach((m, i) => {
      if (!m) return
      for (let v = 0; v < V; v++) {
        g.push(got[(b * r.length + i) * V + v]!)
        w.push(want[(b * r.length + i) * V + v]!)
      }
    }),
  )
  const maxAbs = w.reduce((a, x) => Math.max(a, Math.abs(x)), 0)
  t.ok(maxAbs > 0.5, `${what}: logits are not trivially small (max |logit| ${maxAbs.toFixed(3)})`)
  const c = close(g, w, 1e-5, 1e-5 * maxAbs)
  t.ok(c.ok, `${what}: ${describe(c)}`)
}

const cases: [string, Arch, Partial<RefConfig>][] = [
  ['llama', 'llama', {}],
  [
    'llama3 rope_scaling, tied, attention and mlp bias',
    'llama',
    {
      rope_theta: 500000,
      tie_word_embeddings: true,
      attention_bias: true,
      mlp_bias: true,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    },
  ],
  ['llama head_dim != hidden/heads', 'llama', { head_dim: 8 }],
  ['mistral, sliding window 4 < T', 'mistral', {}],
  ['qwen2 (q/k/v bias, tied)', 'qwen2', {}],
  ['qwen2 untied, sliding on layer 1', 'qwen2', { tie_word_embeddings: false, use_sliding_window: true, sliding_window: 3, max_window_layers: 1 }],
  ['gemma2 (soft-capping, sliding window 3 on even layers)', 'gemma2', {}],
]

for (const [name, arch, overrides] of cases) {
  t.test(name, async (t) => {
    const config = tinyConfig(arch, overrides)
    const weights = tinyWeights(config, 7)
    const dir = writeTiny(path.join(root, name.replace(/\W+/g, '-')), config, weights)
    const model = await CausalLM.fromPretrained(dir)
    t.equal(model.config.model_type, arch)
    const host = hostWeights(weights)
    const V = config.vocab_size

    const plain = model.forward(ids(rows), { attentionMask: ids(rightPad) })
    t.same(plain.logits.shape, [2, 9, V])
    t.same(plain.hidden.shape, [2, 9, config.hidden_size])
    compare(t, plain.logits.toArray() as Float32Array, referenceLogits(config, host, rows, rightPad), rightPad, V, 'right padding')

    // Left padding with explicit positions (how generate feeds prompts).
    const left = [[0, 0, 5, 17, 3, 99, 42, 8, 61], rows[0]!]
    const leftMask = [[0, 0, 1, 1, 1, 1, 1, 1, 1], rightPad[0]!]
    const pos = [
      [1, 1, 0, 1, 2, 3, 4, 5, 6],
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
    ]
    const out = await model.forwardAsync(ids(left), { attentionMask: ids(leftMask), positionIds: ids(pos) })
    compare(t, out.logits.toArray() as Float32Array, referenceLogits(config, host, left, leftMask, pos), leftMask, V, 'left padding + positions')
  })
}

t.test('no mask equals an all-ones mask; fp16 and bf16 checkpoints load into float32', async (t) => {
  const config = tinyConfig('llama')
  const weights = tinyWeights(config, 3)
  const a = await CausalLM.fromPretrained(writeTiny(path.join(root, 'bf16'), config, weights, 'bfloat16'))
  const b = await CausalLM.fromPretrained(writeTiny(path.join(root, 'fp16'), config, weights, 'float16'))
  for (const m of [a, b]) {
    const [name, p] = [...m.namedParameters()][1]!
    t.equal(p.dtype, 'float32', `${name} is float32`)
    const x = ids(rows)
    const l1 = m.forward(x).logits.toArray() as Float32Array
    const l2 = m.forward(x, { attentionMask: Tensor.full([2, 9], 1, { dtype: 'int64' }) }).logits.toArray() as Float32Array
    t.same(Array.from(l1), Array.from(l2))
  }
})
