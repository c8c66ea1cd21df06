// --resume across optimizer layouts (issue #25): ZeRO-3's per-unit flat chunks and ZeRO-0/1/2's
// per-name tensors convert into each other (lib/distributed/zero3-resume.ts).
//   - The conversion itself only moves elements, so it is checked to the bit: named → chunks on 2
//     ranks → chunks on 3 → named gives back the saved tensors, each chunk equal to the unit's
//     tensors flattened by hand and zero-padded.
//   - A resumed run is compared with the uninterrupted run of the layout it resumes in. The two
//     differ only where sums are taken (ZeRO-3 reduce-scatters each unit's gradient, ZeRO-1
//     all-reduces buckets; 2 fp32 terms, one rounding either way, then Σ g² per shard or per
//     bucket), so their step-2 checkpoints differ by fp32 reordering, and the resumed steps 3-4
//     carry that on: the bounds of test/dist-zero3.test.ts (losses 5e-5 relative, weights 1e-5
//     after 4 AdamW steps with ε = 1e-6: 4 · lr · δg / ε with δg ≲ 1e-9 gives 4e-6). A resume that
//     lost or misplaced its moments changes its first update by up to ~lr = 1e-3 instead; the
//     test checks steps 3-4 move the weights by more than 10 × the bound.
//   - One process has no run of the same global batch to compare with (--batch-size is per rank
//     and stays on resume), so the ZeRO-3 checkpoint resumed in one process is compared with the
//     ZeRO-1 checkpoint resumed there, by the re-sharding by name that existed before.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { Tensor } from '../lib/core/tensor'
import { type GatherUnit, reshardState, unitLayout } from '../lib/distributed/zero3-resume'
import { loadSafetensors, saveSafetensors } from '../lib/io'
import { CausalLM } from '../lib/model'
import { COMPLETE_MARKER } from '../lib/train/checkpoints'
import { Trainer } from '../lib/train/engine'
import { readMetrics } from '../lib/train/metrics-log'
import { tempDir } from './helpers/data-fixtures'
import { RUN_SETTINGS, runCli, startRankPair, trainedWeights, weightDifference } from './helpers/dist-run'
import { tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const LOSS_BOUND = 5e-5
const WEIGHT_BOUND = 1e-5
// AdamW's kinds of state (a bf16 model's fp32 master too).
const KINDS = ['exp_avg', 'exp_avg_sq', 'master']

/** Host copies of a record of tensors. */
function host(tensors: Record<string, Tensor>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, Array.from(v.toArray() as Float32Array)]))
}

/** Elements of `got` that differ from `want`'s (a count: a diff of every array would be slow to print). */
function mismatches(got: Record<string, number[]>, want: Record<string, number[]>): number {
  let n = 0
  for (const [k, v] of Object.entries(got)) n += v.filter((x, i) => !Object.is(x, want[k]?.[i])).length
  return n
}

/** Zeroed slots of a rank of ZeRO-3 on `world` ranks (what its AdamW.stateTensors() would hand reshardState). */
function chunkSlots(units: readonly GatherUnit[], world: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {}
  for (const u of units) for (const kind of KINDS) out[`${kind}.${u.name}`] = Tensor.zeros([Math.ceil(u.numel / world)])
  return out
}

t.test('the gather units are the model parameters in order; re-sharding between names and chunks is exact', async (t) => {
  const model = await CausalLM.fromPretrained(makeTrainableModel(t, 3))
  const units = unitLayout(model)
  const params = [...model.namedParameters()]
  t.same(
    units.flatMap((u) => u.tensors.map((x) => [x.name, x.shape])),
    params.map(([n, p]) => [n, p.shape]),
    'every parameter once, in model order, with its shape',
  )
  t.same(
    units.map((u) => u.name),
    ['zero3.model.embed_tokens.weight', 'zero3.model.layers.0', 'zero3.model.layers.1', 'zero3.model.norm.weight', 'zero3.lm_head.weight'],
    'units: embedding, each layer, the final norm, the untied head',
  )
  const tiedDir = tempDir(t)
  const tied = tinyConfig('qwen2')
  writeTiny(tiedDir, tied, tinyWeights(tied))
  t.notOk(
    unitLayout(await CausalLM.fromPretrained(tiedDir)).some((u) => u.name === 'zero3.lm_head.weight'),
    'a tied head is the embedding: no unit of its own',
  )

  // A named state (ZeRO-0's optimizer.safetensors) with distinct values everywhere.
  const work = tempDir(t)
  Tensor.manualSeed(7)
  const named: Record<string, Tensor> = {}
  for (const [n, p] of params) for (const kind of KINDS) named[`${kind}.${n}`] = Tensor.randn(p.shape)
  const namedFile = path.join(work, 'optimizer.safetensors')
  saveSafetensors(namedFile, named)
  const saved = host(named)

  // named → chunks on 2 ranks, then on 3 (every unit but one needs padding for 2 or 3).
  const write = (world: number, from: string[], fromLayout: Parameters<typeof reshardState>[2]) =>
    Array.from({ length: world }, (_, rank) => {
      const slots = chunkSlots(units, world)
      reshardState(slots, from, fromLayout, { kind: 'chunks', rank, world }, units)
      const file = path.join(work, `optimizer-rank${rank}-of-${world}.safetensors`)
      saveSafetensors(file, slots)
      return { file, slots: host(slots) }
    })
  const two = write(2, [namedFile], { kind: 'named' })
  const three = write(
    3,
    two.map((x) => x.file),
    { kind: 'chunks', rank: 0, world: 2 },
  )
  for (const [world, ranks] of [
    [2, two],
    [3, three],
  ] as const) {
    let exact = true
    for (const u of units)
      for (const kind of KINDS) {
        // The unit by hand: its tensors flattened in order, zero-padded to chunk × world.
        const chunk = Math.ceil(u.numel / world)
        const flat = u.tensors.flatMap((x) => saved[`${kind}.${x.name}`]!)
        while (flat.length < chunk * world) flat.push(0)
        ranks.forEach((r, rank) => {
          const got = r.slots[`${kind}.${u.name}`]!
          exact &&= got.length === chunk && got.every((v, i) => Object.is(v, flat[rank * chunk + i]))
        })
      }
    t.ok(exact, `every chunk on ${world} ranks is its unit flattened, padded and cut, to the bit`)
  }
  t.ok(
    units.some((u) => u.numel % 2 !== 0 || u.numel % 3 !== 0),
    'some unit is padded, so dropping the padding is exercised',
  )

  // chunks on 3 → named (ZeRO-0), and → the names one ZeRO-1 rank owns.
  const back: Record<string, Tensor> = Object.fromEntries(Object.entries(named).map(([k, v]) => [k, Tensor.zeros(v.shape)]))
  reshardState(
    back,
    three.map((x) => x.file),
    { kind: 'chunks', rank: 0, world: 3 },
    { kind: 'named' },
    units,
  )
  t.equal(mismatches(host(back), saved), 0, 'named → 2 ranks → 3 ranks → named gives back every tensor to the bit')
  const owned = Object.fromEntries(
    Object.entries(named)
      .filter(([k]) => k.includes('layers.1.'))
      .map(([k, v]) => [k, Tensor.zeros(v.shape)]),
  )
  reshardState(
    owned,
    two.map((x) => x.file),
    { kind: 'chunks', rank: 0, world: 2 },
    { kind: 'named' },
    units,
  )
  t.equal(mismatches(host(owned), saved), 0, 'a ZeRO-1 rank takes just the tensors it owns, to the bit')

  // Files from strangers: a missing or ill-shaped tensor names its file and the tensor.
  const bad = path.join(work, 'bad')
  fs.mkdirSync(bad)
  const damaged = (file: string, edit: (x: Record<string, Tensor>) => void) => {
    const x = loadSafetensors(file)
    edit(x)
    const out = path.join(bad, path.basename(file))
    saveSafetensors(out, x)
    return out
  }
  const chunksWith = (edit: (x: Record<string, Tensor>) => void) => [two[0]!.file, damaged(two[1]!.file, edit)]
  const toNamed = (files: string[], from: Parameters<typeof reshardState>[2]) => () =>
    reshardState(Object.fromEntries(Object.entries(named).map(([k, v]) => [k, Tensor.zeros(v.shape)])), files, from, { kind: 'named' }, units)
  const twoRanks = { kind: 'chunks', rank: 0, world: 2 } as const
  t.throws(
    toNamed(
      chunksWith((x) => delete x['exp_avg_sq.zero3.model.layers.1']),
      twoRanks,
    ),
    /bad\/optimizer-rank1-of-2\.safetensors: optimizer state: missing tensor 'exp_avg_sq\.zero3\.model\.layers\.1'/,
  )
  t.throws(
    toNamed(
      chunksWith((x) => (x['exp_avg.zero3.model.norm.weight'] = Tensor.zeros([5]))),
      twoRanks,
    ),
    /optimizer-rank1-of-2\.safetensors: optimizer state: 'exp_avg\.zero3\.model\.norm\.weight' has shape \[5\], expected \[16\]/,
  )
  t.throws(
    toNamed(
      chunksWith((x) => (x['exp_avg.zero3.model.norm.weight'] = Tensor.zeros([16], { dtype: 'float64' }))),
      twoRanks,
    ),
    /bad\/optimizer-rank1-of-2\.safetensors: optimizer state: 'exp_avg\.zero3\.model\.norm\.weight' is float64, this run keeps float32/,
  )
  const toChunks = (file: string) => () => reshardState(chunkSlots(units, 2), [file], { kind: 'named' }, { kind: 'chunks', rank: 1, world: 2 }, units)
  t.throws(
    toChunks(damaged(namedFile, (x) => delete x['exp_avg.model.layers.0.mlp.up_proj.weight'])),
    /bad\/optimizer\.safetensors: optimizer state: missing tensor 'exp_avg\.model\.layers\.0\.mlp\.up_proj\.weight'/,
  )
  t.throws(
    toChunks(damaged(namedFile, (x) => (x['exp_avg_sq.model.norm.weight'] = Tensor.zeros([2, 16])))),
    /bad\/optimizer\.safetensors: optimizer state: 'exp_avg_sq\.model\.norm\.weight' has shape \[2,16\], expected \[32\]/,
  )
})

/** The worst relative loss difference over the steps both runs logged, and how many steps those were. */
function lossDifference(a: string, b: string): { worst: number; steps: number } {
  const mb = new Map(readMetrics(b).flatMap((m) => (m.loss === undefined ? [] : [[m.step, m.loss] as const])))
  let worst = 0
  let steps = 0
  for (const m of readMetrics(a)) {
    const other = mb.get(m.step)
    if (m.loss === undefined || other === undefined) continue
    worst = Math.max(worst, Math.abs(m.loss - other) / Math.abs(m.loss))
    steps++
  }
  return { worst, steps }
}

t.test('ZeRO-3 checkpoints resume in other layouts, and other layouts resume at ZeRO-3, continuing as the target layout', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 17)
  const config = {
    model,
    referenceModel,
    data: [data],
    ...RUN_SETTINGS,
    method: 'epsilon-dpo',
    epsilon: 0.1,
    beta: 0.5,
    maxSteps: 4,
    saveEvery: 2,
    batchSize: 4,
  }
  const out = (name: string) => path.join(work, name)
  const cutFrom = (full: string, name: string) => ({ from: path.join(out(full), 'checkpoint-2'), to: path.join(out(name), 'checkpoint-2') })
  // Uninterrupted ZeRO-3 and ZeRO-1 runs on 2 ranks; each one's step-2 checkpoint resumed in the other layout (and ZeRO-3's at ZeRO-2).
  const pair = startRankPair(
    work,
    [
      { kind: 'train', config: { ...config, zeroStage: 3, out: out('z3') } },
      { kind: 'train', config: { ...config, zeroStage: 1, out: out('z1') } },
      { kind: 'train', resume: out('z3-to-z1'), config: { zeroStage: 1 }, copyBefore: cutFrom('z3', 'z3-to-z1') },
      { kind: 'train', resume: out('z3-to-z2'), config: { zeroStage: 2 }, copyBefore: cutFrom('z3', 'z3-to-z2') },
      { kind: 'train', resume: out('z1-to-z3'), config: { zeroStage: 3 }, copyBefore: cutFrom('z1', 'z1-to-z3') },
    ],
    600_000,
  )
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)

  const compare = (label: string, resumed: string, reference: string) => {
    const loss = lossDifference(resumed, reference)
    t.equal(loss.steps, 2, `${label}: the resumed run logged steps 3 and 4`)
    t.ok(loss.worst <= LOSS_BOUND, `${label}: losses agree (max relative difference ${loss.worst.toExponential(2)} ≤ ${LOSS_BOUND})`)
    const weight = weightDifference(t, label, resumed, reference)
    t.ok(weight <= WEIGHT_BOUND, `${label}: final weights agree (max |Δw| ${weight.toExponential(2)} ≤ ${WEIGHT_BOUND})`)
  }
  compare('ZeRO-3 × 2 → ZeRO-1 × 2 vs ZeRO-1 × 2 throughout', out('z3-to-z1'), out('z1'))
  compare('ZeRO-3 × 2 → ZeRO-2 × 2 vs ZeRO-1 × 2 throughout', out('z3-to-z2'), out('z1'))
  compare('ZeRO-1 × 2 → ZeRO-3 × 2 vs ZeRO-3 × 2 throughout', out('z1-to-z3'), out('z3'))

  // One process: the ZeRO-3 checkpoint, and the ZeRO-1 one through the re-sharding by name.
  for (const [from, name] of [
    ['z3', 'z3-to-one'],
    ['z1', 'z1-to-one'],
  ] as const) {
    fs.cpSync(path.join(out(from), 'checkpoint-2'), path.join(out(name), 'checkpoint-2'), { recursive: true })
    const trainer = await Trainer.create({} as never, { resume: out(name), log: () => {} })
    await trainer.train()
    t.equal(trainer.state.step, 4, `${from}'s checkpoint resumes in one process and trains on`)
  }
  compare('ZeRO-3 × 2 → one process vs ZeRO-1 × 2 → one process', out('z3-to-one'), out('z1-to-one'))

  // Three ranks (the launcher, --nproc-per-node 3): the ZeRO-3 × 2 checkpoint re-sharded into
  // chunks of 3 continues as the same checkpoint resumed at ZeRO-1 × 3 (named state, by owner).
  for (const [stage, name] of [
    [3, 'z3-to-z3x3'],
    [1, 'z3-to-z1x3'],
  ] as const) {
    fs.cpSync(path.join(out('z3'), 'checkpoint-2'), path.join(out(name), 'checkpoint-2'), { recursive: true })
    const r = runCli(['train', '--resume', out(name), '--nproc-per-node', '3', '--zero-stage', String(stage), '--dist-timeout', '120'], {}, 400_000)
    t.equal(r.status, 0, `${name}: three ranks resume and finish (${r.stderr.slice(-800)})`)
  }
  t.ok(fs.existsSync(path.join(out('z3-to-z3x3'), 'checkpoint-4', 'optimizer-rank2-of-3.safetensors')), 'ZeRO-3 × 3 writes three optimizer shards')
  compare('ZeRO-3 × 2 → ZeRO-3 × 3 vs ZeRO-3 × 2 → ZeRO-1 × 3', out('z3-to-z3x3'), out('z3-to-z1x3'))

  // The bound is far below what training moves: steps 3-4 change the weights by ≫ 1e-5.
  const before = trainedWeightsAt(path.join(out('z3'), 'checkpoint-2'))
  const after = trainedWeights(out('z3'))
  const step = Math.max(...Object.entries(before).map(([k, v]) => Math.max(...v.map((x, i) => Math.abs(x - after[k]![i]!)))))
  t.ok(step >= 10 * WEIGHT_BOUND, `steps 3-4 move the weights by ${step.toExponential(2)} ≥ 10 × the bound`)

  // A damaged shard is named with its tensor; without its optimizer shards the checkpoint fails at once.
  const broken = out('broken')
  fs.cpSync(path.join(out('z3'), 'checkpoint-2'), path.join(broken, 'checkpoint-2'), { recursive: true })
  const shard = path.join(broken, 'checkpoint-2', 'optimizer-rank1-of-2.safetensors')
  const tensors = loadSafetensors(shard)
  delete tensors['exp_avg.zero3.model.layers.0']
  saveSafetensors(shard, tensors)
  // The completion marker lists each file's size: the damaged file is listed as written.
  const marker = path.join(broken, 'checkpoint-2', COMPLETE_MARKER)
  const listed = JSON.parse(fs.readFileSync(marker, 'utf8')) as { step: number; files: Record<string, number> }
  listed.files['optimizer-rank1-of-2.safetensors'] = fs.statSync(shard).size
  fs.writeFileSync(marker, JSON.stringify(listed))
  await t.rejects(
    Trainer.create({} as never, { resume: broken, log: () => {} }),
    /optimizer-rank1-of-2\.safetensors: optimizer state: missing tensor 'exp_avg\.zero3\.model\.layers\.0'/,
  )
  fs.rmSync(shard)
  await t.rejects(Trainer.create({} as never, { resume: broken, log: () => {} }), /optimizer-rank1-of-2\.safetensors is missing/)
})

/** The model weights of one checkpoint folder (ZeRO-3 writes one file per unit, with an index). */
function trainedWeightsAt(checkpoint: string): Record<string, number[]> {
  const index = JSON.parse(fs.readFileSync(path.join(checkpoint, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> }
  const out: Record<string, number[]> = {}
  for (const f of new Set(Object.values(index.weight_map))) Object.assign(out, host(loadSafetensors(path.join(checkpoint, f))))
  return out
}
