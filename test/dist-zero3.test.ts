// ZeRO-3 (issue #25): 2 ranks with sharded parameters train like 1 process and like ZeRO-0 on 2
// ranks. Stage 3 changes where each sum is taken, not what is summed:
//   - a unit's gradient is reduce-scattered in every micro-batch's backward (each chunk onto its
//     rank: 2 fp32 terms, one rounding, as ZeRO-0's all-reduce), and with accumulation 2 the
//     shards sum (a1 + b1)/2 + (a2 + b2)/2 instead of ((a1 + a2) + (b1 + b2))/2: fp32 reordering,
//     ~1e-7 relative per gradient element;
//   - the gradient norm's Σ g² is taken per shard, then across ranks;
// so the bounds are those of test/dist-equivalence.test.ts (losses 5e-5 relative, weights 1e-5
// after 3 AdamW steps with ε = 1e-6: 3 · lr · δg / ε with δg ≲ 1e-9). The weights compared are
// the checkpoint's, which stage 3 writes gathered one unit per file.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { readMetrics } from '../lib/train/metrics-log'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { equivalenceRun, folderWeights, RUN_SETTINGS, startRankPair, weightDifference } from './helpers/dist-run'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

type T = { ok(v: boolean, m: string): void; equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void }

/** The worst loss (relative) and weight differences of two runs, asserted against the bounds above. */
function compareRuns(t: T, label: string, a: string, b: string): { loss: number; weight: number } {
  const ma = readMetrics(a).filter((m) => m.loss !== undefined)
  const mb = readMetrics(b).filter((m) => m.loss !== undefined)
  t.equal(ma.length, mb.length, `${label}: same number of logged steps`)
  let loss = 0
  for (let i = 0; i < ma.length; i++) loss = Math.max(loss, Math.abs(ma[i]!.loss! - mb[i]!.loss!) / Math.abs(ma[i]!.loss!))
  for (const key of ['kl/beta', 'eval_loss'] as const) {
    const va = readMetrics(a).flatMap((m) => m[key] ?? [])
    const vb = readMetrics(b).flatMap((m) => m[key] ?? [])
    t.equal(va.length, vb.length, `${label}: as many ${key} entries`)
    const rel = Math.max(0, ...va.map((v, i) => Math.abs(v - vb[i]!) / Math.abs(v)))
    t.ok(rel <= 5e-5, `${label}: ${key} agrees (max relative difference ${rel.toExponential(2)})`)
  }
  t.ok(loss <= 5e-5, `${label}: losses agree (max relative difference ${loss.toExponential(2)} ≤ 5e-5)`)
  const weight = weightDifference(t, label, a, b)
  t.ok(weight <= 1e-5, `${label}: final weights agree (max |Δw| ${weight.toExponential(2)} ≤ 1e-5)`)
  return { loss, weight }
}

t.test('ZeRO-3 on 2 ranks equals 1 process and ZeRO-0', async (t) => {
  // The third global micro-batch of 8 holds one row, so rank 1 runs a stand-in row weighted 0
  // there (its gathers are collectives).
  const { work, base, referenceModel } = equivalenceRun(t)
  const pref = { ...base, referenceModel, beta: 0.5 }
  // `ranks`: settings of the ZeRO-3 run only.
  const cases: { label: string; kind: 'train' | 'sft'; config: Record<string, unknown>; ranks?: Record<string, unknown> }[] = [
    { label: 'epsilon-dpo', kind: 'train', config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1 } },
    {
      label: 'epsilon-dpo checkpointing accumulation 2',
      kind: 'train',
      config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1, gradientCheckpointing: true, gradAccumulation: 2 },
    },
    {
      label: 'epsilon-dpo whole reference accumulation 2',
      kind: 'train',
      config: { ...pref, method: 'epsilon-dpo', epsilon: 0.1, gradAccumulation: 2 },
      ranks: { shardReference: false },
    },
    { label: 'dpo checkpointing', kind: 'train', config: { ...pref, method: 'dpo', gradientCheckpointing: true } },
    // The moving reference mixes the policy in shard by shard, after every step (τ = 1).
    { label: 'tr-dpo soft', kind: 'train', config: { ...pref, method: 'tr-dpo', trDpoTau: 1 } },
    { label: 'tr-dpo hard checkpointing', kind: 'train', config: { ...pref, method: 'tr-dpo', trDpoTau: 2, trDpoMode: 'hard', gradientCheckpointing: true } },
    // β-DPO's M0, σ, filtering and β are the global micro-batch's on every rank (an all-gather of the margins).
    { label: 'beta-dpo accumulation 2', kind: 'train', config: { ...pref, method: 'beta-dpo', gradAccumulation: 2 } },
    { label: 'sft accumulation 2', kind: 'sft', config: { ...base, gradAccumulation: 2 } },
    { label: 'sft checkpointing', kind: 'sft', config: { ...base, gradientCheckpointing: true } },
  ]
  // Also compared with ZeRO-0 on 2 ranks, where a rank without rows skips a micro-batch (ZeRO-3 and β-DPO run a stand-in row).
  const againstZero0 = cases.filter((c) => /^(epsilon-dpo checkpointing|beta-dpo)/.test(c.label))
  const out = (label: string, what: string) => path.join(work, `${label.replace(/ /g, '-')}-${what}`)
  const jobs = cases.map((c) => ({
    kind: c.kind,
    config: { ...c.config, ...c.ranks, batchSize: 4, zeroStage: 3, out: out(c.label, 'zero3') },
  }))
  for (const c of againstZero0) jobs.push({ kind: c.kind, config: { ...c.config, batchSize: 4, zeroStage: 0, out: out(c.label, 'zero0') } })
  const pair = startRankPair(work, jobs, 900_000)
  for (const c of cases) {
    const config = { ...c.config, batchSize: 8, out: out(c.label, 'one') }
    const trainer = c.kind === 'sft' ? await SftTrainer.create(config as never, { log: () => {} }) : await Trainer.create(config as never, { log: () => {} })
    await trainer.train()
  }
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)
  for (const c of cases) {
    const d = compareRuns(t, `ZeRO-3 vs 1 process (${c.label})`, out(c.label, 'one'), out(c.label, 'zero3'))
    t.comment(`${c.label}: worst loss ${d.loss.toExponential(2)}, worst |Δw| ${d.weight.toExponential(2)}`)
  }
  for (const c of againstZero0) compareRuns(t, `ZeRO-3 vs ZeRO-0 (${c.label})`, out(c.label, 'zero0'), out(c.label, 'zero3'))
})

/**
 * `config` trained at ZeRO-3 on 2 ranks × batch 4 into <work>/full, and the same run cut after its
 * step-2 checkpoint and resumed by the same two ranks into <work>/cut; `done` settles when both ranks exit.
 */
function trainAndResume(work: string, config: Record<string, unknown>, env: Record<string, string> = {}) {
  const full = path.join(work, 'full')
  const cut = path.join(work, 'cut')
  const pair = startRankPair(
    work,
    [
      { kind: 'train', config: { ...config, batchSize: 4, zeroStage: 3, out: full } },
      { kind: 'train', resume: cut, config: {}, copyBefore: { from: path.join(full, 'checkpoint-2'), to: path.join(cut, 'checkpoint-2') } },
    ],
    600_000,
    env,
  )
  return { full, cut, done: pair.done }
}

/** Each of `files` is byte-for-byte the same in folders a and b. */
function sameBytes(t: T, a: string, b: string, files: readonly string[], label: string): void {
  for (const f of files) t.ok(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f))), `${label}: ${f}`)
}

const STATE_KEYS = ['policy_weights', 'reference_weights', 'master_weights', 'optimizer_moments', 'gradients'].map((k) => `memory/${k}_bytes`)

t.test('ZeRO-3: half the state per rank at rest; checkpoints resume bit-exact on 2 ranks', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 17)
  const config = { model, referenceModel, data: [data], ...RUN_SETTINGS, method: 'epsilon-dpo', epsilon: 0.1, beta: 0.5, maxSteps: 4, saveEvery: 2 }
  const { full, cut, done } = trainAndResume(work, config, { EDPO_MEMORY_REPORT: '1' })
  const one = path.join(work, 'one')
  process.env.EDPO_MEMORY_REPORT = '1'
  try {
    await (await Trainer.create({ ...config, maxSteps: 1, batchSize: 8, out: one } as never, { log: () => {} })).train()
  } finally {
    delete process.env.EDPO_MEMORY_REPORT
  }
  const { codes, stderr } = await done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)

  // At rest: policy and reference shards, the fp32 model's moments and the gradient shards.
  const stateOf = (out: string) => {
    const m = readMetrics(out).find((e) => e.step === 1)!
    return STATE_KEYS.reduce((a, k) => a + (m[k] ?? Number.NaN), 0)
  }
  const ratio = stateOf(full) / stateOf(one)
  t.ok(ratio <= 0.6, `rank 0's state at ZeRO-3 on 2 ranks is ${ratio.toFixed(3)} of one process's (≤ 0.6)`)
  t.ok(ratio >= 0.5, 'and no less than half: each unit is padded, never dropped')
  t.comment(`state bytes: ZeRO-3 rank 0 ${stateOf(full)}, one process ${stateOf(one)}, ratio ${ratio.toFixed(4)}`)

  const files = fs.readdirSync(path.join(full, 'checkpoint-4')).filter((f) => f.endsWith('.safetensors'))
  t.ok(
    files.includes('optimizer-rank1-of-2.safetensors') && files.some((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)),
    `one file per gather unit and one optimizer shard per rank (${files.length} files)`,
  )
  sameBytes(t, path.join(full, 'checkpoint-4'), path.join(cut, 'checkpoint-4'), files, 'resume is bit-exact')

  // (Other layouts re-shard: test/dist-zero3-resume.test.ts.)
  const other = path.join(work, 'other')
  fs.cpSync(path.join(full, 'checkpoint-2'), path.join(other, 'checkpoint-2'), { recursive: true })
  // Without its optimizer shards a stage-3 checkpoint fails, naming the missing file.
  fs.rmSync(path.join(other, 'checkpoint-2', 'optimizer-rank1-of-2.safetensors'))
  await t.rejects(Trainer.create({} as never, { resume: other, log: () => {} }), /optimizer-rank1-of-2\.safetensors is missing/)
  // What stage 3 does not run is refused before any work, naming the flags.
  const { epsilon: _epsilon, ...fresh } = { ...config, out: path.join(work, 'refused'), batchSize: 8 }
  await t.rejects(Trainer.create({ ...fresh, epsilon: 0.1, zeroStage: 3, loraR: 4 } as never, { log: () => {} }), /--zero-stage 3 with --lora-r/)
  await t.rejects(
    Trainer.create({ ...fresh, zeroStage: 3, method: 'tr-dpo', shardReference: false } as never, { log: () => {} }),
    /--zero-stage 3 with --method tr-dpo and --no-shard-reference/,
  )
  await t.rejects(
    Trainer.create({ ...fresh, epsilon: 0.1, zeroStage: 2, shardReference: false } as never, { log: () => {} }),
    /--no-shard-reference: .*--zero-stage 3/,
  )
})

t.test('ZeRO-3 TR-DPO: the sharded moving reference is gathered into each checkpoint and resumes bit-exact', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 17)
  const config = { model, referenceModel, data: [data], ...RUN_SETTINGS, method: 'tr-dpo', trDpoTau: 1, beta: 0.5, maxSteps: 4, saveEvery: 2 }
  const { full, cut, done } = trainAndResume(work, config)
  const { codes, stderr } = await done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)
  const reference = (out: string) => path.join(out, 'checkpoint-4', 'reference')
  const files = fs.readdirSync(reference(full)).filter((f) => f.endsWith('.safetensors'))
  t.ok(
    files.some((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)),
    `the reference is written gathered, one file per unit (${files.join(', ')})`,
  )
  // The reference moved: after 4 syncs at τ = 1 it is no longer the model it started from.
  const start = folderWeights(referenceModel)
  const moved = folderWeights(reference(full))
  t.same(Object.keys(moved).sort(), Object.keys(start).sort(), 'the reference holds every tensor, unsharded')
  t.ok(
    Object.entries(moved).some(([k, v]) => v.some((x, i) => x !== start[k]![i])),
    'the reference followed the policy',
  )
  sameBytes(t, reference(full), reference(cut), files, 'resume is bit-exact: reference')
  const checkpoint = (out: string) => path.join(out, 'checkpoint-4')
  const weights = fs.readdirSync(checkpoint(full)).filter((n) => n.endsWith('.safetensors'))
  sameBytes(t, checkpoint(full), checkpoint(cut), weights, 'resume is bit-exact')
})
