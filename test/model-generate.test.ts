// CausalLM.generate: seeded sampling is reproducible, greedy decoding follows the forward's
// argmax step by step (through the KV cache and sliding windows), left-padded batches decode each
// sequence as if alone, and eos ends rows.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, type Tensor } from '../lib/index'
import { type Arch, ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-model-gen-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))

async function load(arch: Arch): Promise<CausalLM> {
  const config = tinyConfig(arch)
  return CausalLM.fromPretrained(writeTiny(path.join(root, arch), config, tinyWeights(config, 11)))
}

const rowsOf = (x: Tensor): number[][] => {
  const [B, T] = x.shape as [number, number]
  const flat = Array.from(x.toArray() as BigInt64Array, Number)
  return Array.from({ length: B }, (_, b) => flat.slice(b * T, (b + 1) * T))
}

/**
 * Whether each token after `promptLength` is an argmax of a fresh full forward over its prefix,
 * within fp32 rounding: KV-cached decoding and differently padded batches reach the same logits in
 * another order, so a near-tie may go either way. Returns a description of the first miss.
 */
function notGreedy(m: CausalLM, row: number[], promptLength: number): string | undefined {
  const logits = m
    .forward(ids([row]))
    .logits.to('float64')
    .toArray() as Float64Array
  const V = logits.length / row.length
  for (let pos = promptLength; pos < row.length; pos++) {
    const next = logits.subarray((pos - 1) * V, pos * V)
    const max = Math.max(...next)
    if (next[row[pos]!]! < max - 1e-4 * (1 + Math.abs(max))) return `token ${row[pos]} at ${pos} has logit ${next[row[pos]!]}, the max is ${max}`
  }
  return undefined
}

t.test('seeded sampling is reproducible', async (t) => {
  const m = await load('llama')
  const prompt = ids([
    [5, 17, 3],
    [9, 8, 7],
  ])
  const opts = { maxNewTokens: 12, temperature: 1.3, topK: 50, topP: 0.95 }
  const a = rowsOf(m.generate(prompt, { ...opts, seed: 42 }))
  const b = rowsOf(await m.generateAsync(prompt, { ...opts, seed: 42 }))
  const c = rowsOf(m.generate(prompt, { ...opts, seed: 43 }))
  t.same(a, b, 'same seed, same tokens')
  t.notSame(a, c, 'another seed, other tokens')
  t.same(
    a.map((r) => r.length),
    [15, 15],
  )
  t.same(
    a.map((r) => r.slice(0, 3)),
    [
      [5, 17, 3],
      [9, 8, 7],
    ],
    'prompt kept',
  )
  const k1 = rowsOf(m.generate(prompt, { ...opts, topK: 1, seed: 1 }))
  const greedy = rowsOf(m.generate(prompt, { maxNewTokens: 12 }))
  t.same(k1, greedy, 'top-k 1 is greedy')
})

for (const arch of ['llama', 'mistral', 'gemma2'] as const) {
  t.test(`${arch}: greedy decoding equals the forward's argmax step by step`, async (t) => {
    const m = await load(arch)
    const prompt = ids([
      [5, 17, 3, 99, 42],
      [11, 4, 88, 23, 6],
    ])
    const out = m.generate(prompt, { maxNewTokens: 6 })
    t.same(out.shape, [2, 11])
    for (const [b, row] of rowsOf(out).entries()) {
      const miss = notGreedy(m, row, 5)
      t.equal(miss, undefined, `row ${b}: ${miss ?? ''}`)
    }
  })
}

t.test('left-padded batch generation is greedy for each unpadded sequence', async (t) => {
  for (const arch of ['llama', 'qwen2'] as const) {
    const m = await load(arch)
    const a = [5, 17, 3, 99, 42, 8, 61],
      b = [11, 4, 88]
    const batch = m.generate(ids([a, [0, 0, 0, 0, ...b]]), {
      maxNewTokens: 5,
      attentionMask: ids([
        [1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1],
      ]),
    })
    // Each row's new tokens must be greedy for its own unpadded sequence: padding that leaked into
    // attention or positions moves the logits by far more than the rounding bound.
    const [ra, rb] = rowsOf(batch)
    t.equal(notGreedy(m, ra!, 7), undefined, `${arch} row 0`)
    t.equal(notGreedy(m, [...b, ...rb!.slice(7)], 3), undefined, `${arch} row 1`)
    const [la, lb] = rowsOf(m.generate(ids([a, [...b, 0, 0, 0, 0]]), { maxNewTokens: 5, lengths: [7, 3] }))
    t.equal(notGreedy(m, la!, 7), undefined, `${arch}: per-sequence lengths, row 0`)
    t.same(lb!.slice(0, 7), [0, 0, 0, 0, ...b], `${arch}: per-sequence lengths give the left-padded layout`)
    t.equal(notGreedy(m, [...b, ...lb!.slice(7)], 3), undefined, `${arch}: per-sequence lengths, row 1`)
  }
})

t.test('eos finishes rows: they repeat eos, and generation stops when all are done', async (t) => {
  const m = await load('llama')
  const prompt = ids([
    [5, 17, 3],
    [9, 8, 7],
  ])
  const greedy = rowsOf(m.generate(prompt, { maxNewTokens: 4 }))
  const eos = greedy[0]![3]!
  const out = rowsOf(m.generate(prompt, { maxNewTokens: 4, eosTokenId: eos }))
  t.equal(out[0]![3], eos)
  if (greedy[1]!.slice(3).includes(eos)) t.pass('row 1 also hits eos')
  else t.same(out[1], greedy[1], 'row 1 runs to maxNewTokens')
  t.same(
    out[0]!.slice(4),
    out[0]!.slice(4).map(() => eos),
    'finished row repeats eos',
  )
  const single = rowsOf(m.generate(ids([[5, 17, 3]]), { maxNewTokens: 4, eosTokenId: [eos] }))
  t.same(single[0]!.length, 4, 'a single finished row stops early')
})

t.test('bad generate options are rejected', async (t) => {
  const m = await load('llama')
  const prompt = ids([[5, 17, 3]])
  t.throws(() => m.generate(prompt, { maxNewTokens: -1 }), /opts\.maxNewTokens/)
  t.throws(() => m.generate(prompt, { maxNewTokens: 2, topP: 0 }), /opts\.topP/)
  t.throws(() => m.generate(prompt, { maxNewTokens: 2, lengths: [4] }), /opts\.lengths: expected 1 lengths in \[1, 3\]/)
  t.throws(() => m.generate(ids([[5, 101]]), { maxNewTokens: 2 }), /inputIds: token ids must lie in \[0, 101\), found 101/)
})
