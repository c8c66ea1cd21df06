// Padding-free forward (sequenceLengths, the trainer's --padding-free): the rows run packed, each
// attending only to itself, and give the padded path's hidden states, ε-DPO loss and parameter
// gradients (fp64: equal up to the reduction order), with sliding windows, softcaps and gradient
// checkpointing too; bad lengths are rejected by name; a trainer run with paddingFree logs the
// same losses and gradient norms as one without.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, data, ops, type Tensor } from '../lib/index'
import { Trainer } from '../lib/train/engine'
import { close, describe } from './helpers/assert'
import { tempDir } from './helpers/data-fixtures'
import { type Arch, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-padding-free-'))
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))

// 2 pairs of different prompt and completion lengths: rows of 9, 11, 7 and 4 tokens, right-padded to 11.
const pair = (source: string, prompt: number[], chosen: number[], rejected: number[]): data.TokenizedPair => ({
  source,
  prompt: Int32Array.from(prompt),
  chosen: Int32Array.from(chosen),
  rejected: Int32Array.from(rejected),
})
const PAIRS = [pair('a:1', [5, 17, 3, 99, 42], [8, 11, 4, 2], [23, 2]), pair('a:2', [7, 61], [30, 31, 32, 33, 34, 35, 36, 37, 2], [9, 2])]

async function load(arch: Arch, seed = 11): Promise<CausalLM> {
  const config = tinyConfig(arch)
  const dir = writeTiny(path.join(root, `${arch}-${seed}`), config, tinyWeights(config, seed))
  return CausalLM.fromPretrained(dir, { dtype: 'float64', trainable: seed === 11 })
}

const host = (x: Tensor) => Float64Array.from(x.toArray() as Float64Array)

// The ε-DPO loss of the batch on the given hidden states, and every parameter's gradient.
function lossAndGrads(
  policy: CausalLM,
  reference: CausalLM,
  batch: data.Batch,
  layout: object,
): { hidden: Float64Array; loss: number; grads: Map<string, Float64Array> } {
  const policyHidden = policy.forward(batch.inputIds, layout).hidden
  const referenceHidden = reference.forward(batch.inputIds, { ...layout, grad: false }).hidden
  const out = ops.epsilonDpoLossFromHidden({
    policyHidden,
    policyHead: policy.lmHead().weight,
    referenceHidden,
    referenceHead: reference.lmHead().weight,
    labels: batch.labels,
    lossMask: batch.lossMask,
    beta: 0.5,
    epsilon: 0.05,
    finalLogitSoftcap: policy.lmHead().finalLogitSoftcap || undefined,
    activeRows: batch.activeRows,
  })
  out.loss.backward()
  const grads = new Map<string, Float64Array>()
  for (const [name, p] of policy.namedParameters()) {
    grads.set(name, host(p.grad!))
    p.zeroGrad()
  }
  return { hidden: host(policyHidden.detach()), loss: out.loss.item(), grads }
}

t.test('packed rows give the padded hidden states, loss and gradients (fp64)', async (t) => {
  for (const arch of ['llama', 'gemma2', 'mistral'] as const) {
    for (const checkpointing of [false, true]) {
      const policy = await load(arch)
      policy.train().setGradientCheckpointing(checkpointing)
      const reference = (await load(arch, 12)).eval() // another model: the steps are not all ties
      const batch = data.collate(PAIRS, 0)
      t.same(Array.from(batch.rowLengths), [9, 11, 7, 4], 'row lengths: chosen rows, then rejected')
      const padded = lossAndGrads(policy, reference, batch, { attentionMask: batch.attentionMask })
      const packed = lossAndGrads(policy, reference, batch, { sequenceLengths: Array.from(batch.rowLengths) })
      const what = `${arch}${checkpointing ? ' + checkpointing' : ''}`
      // Real positions agree; padding positions are zeros in the packed layout.
      const H = policy.config.hidden_size
      const T = batch.length
      const real: number[] = [],
        realPacked: number[] = []
      let padding = 0
      batch.rowLengths.forEach((n, r) => {
        for (let k = 0; k < T * H; k++) {
          const i = r * T * H + k
          if (k < n * H) {
            real.push(padded.hidden[i]!)
            realPacked.push(packed.hidden[i]!)
          } else padding = Math.max(padding, Math.abs(packed.hidden[i]!))
        }
      })
      const h = close(realPacked, real, 1e-10, 1e-12)
      t.ok(h.ok, `${what}: hidden states, ${describe(h)}`)
      t.equal(padding, 0, `${what}: zeros on padding`)
      t.ok(Math.abs(packed.loss - padded.loss) <= 1e-12 * Math.abs(padded.loss) + 1e-14, `${what}: loss ${packed.loss} vs ${padded.loss}`)
      for (const [name, g] of padded.grads) {
        const c = close(packed.grads.get(name)!, g, 1e-9, 1e-12)
        if (!c.ok) t.fail(`${what}: ∂${name}, ${describe(c)}`)
      }
      t.pass(`${what}: ${padded.grads.size} parameter gradients agree`)
    }
  }
})

t.test('bad sequenceLengths name the argument', async (t) => {
  const m = await load('llama')
  const batch = data.collate(PAIRS, 0)
  t.throws(() => m.forward(batch.inputIds, { sequenceLengths: [9, 6, 11] }), /sequenceLengths: expected one length per row of inputIds \(4\), got 3/)
  t.throws(() => m.forward(batch.inputIds, { sequenceLengths: [9, 6, 12, 4] }), /sequenceLengths\[2\]: 12 is not in \[1, 11\]/)
  t.throws(() => m.forward(batch.inputIds, { sequenceLengths: [9, 0, 11, 4] }), /sequenceLengths/)
  t.throws(
    () => m.forward(batch.inputIds, { sequenceLengths: [9, 6, 11, 4], attentionMask: batch.attentionMask }),
    /sequenceLengths: padding-free rows take no attentionMask or positionIds/,
  )
})

t.test("a trainer run with paddingFree logs the padded run's losses and gradient norms", async (t) => {
  const model = makeTrainableModel(t, 5)
  const work = tempDir(t)
  const prefs = writeToyPreferences(work, 12)
  const metrics = async (paddingFree: boolean) => {
    const out = path.join(work, `run-${paddingFree}`)
    const trainer = await Trainer.create(
      {
        model,
        data: [prefs],
        out,
        dtype: 'float64',
        batchSize: 4,
        maxSteps: 3,
        learningRate: 1e-3,
        warmupRatio: 0,
        beta: 0.5,
        epsilon: 0.05,
        maxLength: 32,
        seed: 3,
        paddingFree,
      },
      { log: () => {} },
    )
    // The forward calls the method makes: packed exactly when paddingFree.
    const forward = trainer.policy.forwardHiddenAsync.bind(trainer.policy)
    const layouts = new Set<string>()
    trainer.policy.forwardHiddenAsync = (ids, o) => {
      layouts.add(o?.sequenceLengths ? 'packed' : 'padded')
      return forward(ids, o)
    }
    const seen: Record<string, number>[] = []
    trainer.on('log', (m) => seen.push(m as Record<string, number>))
    await trainer.train()
    t.same([...layouts], [paddingFree ? 'packed' : 'padded'], `paddingFree ${paddingFree}: the policy forward's layout`)
    return seen
  }
  const padded = await metrics(false)
  const packed = await metrics(true)
  t.equal(packed.length, 3)
  for (const key of ['loss', 'grad_norm', 'logps/chosen', 'logps/rejected', 'kl/avg_steps']) {
    const c = close(
      packed.map((m) => m[key]!),
      padded.map((m) => m[key]!),
      1e-9,
      1e-12,
    )
    t.ok(c.ok, `${key}: ${describe(c)}`)
  }
})
