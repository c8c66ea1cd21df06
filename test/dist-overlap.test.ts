// Gradients reduced during the backward (csrc/dist/grad_reducer.h, issue #25): 2 Gloo ranks on
// loopback, every wait bounded (the group's 60 s timeout, and each process's exit).
//   - The numbers: overlap on equals overlap off, and equals 1 process × batch 8, at ZeRO-0 and
//     ZeRO-2, with accumulation 1 and 2. With 2 ranks each reduced element is one fp32 addition of
//     the two ranks' values (then a division by 2, exact), and a + b == b + a in IEEE arithmetic:
//     the bucket layout (reverse order, small buckets with overlap; model order, 25 MiB without)
//     cannot change a sum, so on and off must agree to the bit. Against 1 process the bound is
//     dist-equivalence's (1e-5, justified there: a rank's loss over 4 pairs has other matmul
//     shapes and a two-stage mean; AdamW turns the ≲ 1e-9 gradient differences into ≤ 3e-6).
//   - Overlap is real: with 1 KiB buckets the toy llama has many, and on every rank and step some
//     had started their collective when the backward's last gradient arrived.
//   - ZeRO-2 frees the non-owned gradients: a rank's peak gradient bytes (the reducer's count of
//     gradients and buckets it holds, EDPO_MEMORY_REPORT=1) stay under the full set, within its
//     own half plus the buckets in flight (2, plus the one being flattened; a tensor larger than a
//     bucket is one bucket), while overlap off builds every gradient. With
//     accumulation 2 the first micro-batch accumulates every gradient locally (like DDP's
//     no_sync), so only accumulation 1 is held to that bound.
import * as path from 'node:path'

import t from 'tap'

import { nativeAddon, type NativeReducer } from '../lib/core/native'
import { Tensor } from '../lib/core/tensor'
import { DistGroup } from '../lib/distributed/group'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { trainedWeights, weightDifference, RUN_SETTINGS, startRankPair, rankSteps } from './helpers/dist-run'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

t.test('gradients reduced during the backward: same weights as after it and as 1 process; ZeRO-2 frees what it does not own', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4)
  const work = tempDir(t)
  // 16 rows: every global micro-batch of 8 gives each rank 4, so every rank runs every backward.
  const data = writeToyPreferences(work, 16)
  const base = {
    model,
    referenceModel,
    data: [data],
    method: 'epsilon-dpo',
    beta: 0.5,
    epsilon: 0.1,
    ...RUN_SETTINGS,
  }
  const out = (what: string) => path.join(work, what)
  const jobs: { kind: 'train'; config: Record<string, unknown>; stepLog: boolean }[] = []
  for (const accum of [1, 2])
    for (const stage of [0, 2])
      for (const overlap of [true, false])
        jobs.push({
          kind: 'train',
          stepLog: true,
          config: {
            ...base,
            gradAccumulation: accum,
            batchSize: 4,
            zeroStage: stage,
            gradOverlap: overlap,
            bucketMb: 1 / 1024,
            out: out(`a${accum}-z${stage}-${overlap ? 'on' : 'off'}`),
          },
        })
  const pair = startRankPair(work, jobs, 600_000, { EDPO_MEMORY_REPORT: '1' })
  for (const accum of [1, 2]) {
    const trainer = await Trainer.create({ ...base, gradAccumulation: accum, batchSize: 8, out: out(`a${accum}-one`) } as never, { log: () => {} })
    await trainer.train()
  }
  const { codes, stderr } = await pair.done
  t.same(codes, [0, 0], `both ranks finished (stderr: ${stderr})`)

  // Every trained parameter's fp32 gradient: the full set one rank would hold.
  const sizes = Object.values(trainedWeights(out('a1-one'))).map((w) => w.length * 4)
  const fullGradBytes = sizes.reduce((a, b) => a + b, 0)
  // A tensor larger than a bucket is a bucket of its own: the largest one bounds what one bucket holds.
  const bucketBytes = Math.max(1024, ...sizes)
  for (const accum of [1, 2]) {
    for (const stage of [0, 2]) {
      const on = out(`a${accum}-z${stage}-on`)
      const off = out(`a${accum}-z${stage}-off`)
      const label = `ZeRO-${stage}, accumulation ${accum}`
      const onOff = weightDifference(t, label, on, off)
      t.equal(onOff, 0, `${label}: overlap on and off train the same weights (max |Δw| ${onOff})`)
      const one = weightDifference(t, label, on, out(`a${accum}-one`))
      t.ok(one <= 1e-5, `${label}: overlap on equals 1 process × batch 8 (max |Δw| ${one.toExponential(2)} ≤ 1e-5)`)
      for (const rank of [0, 1]) {
        const s = rankSteps(on, rank)
        t.equal(s.length, 3, `${label}, rank ${rank}: 3 steps logged`)
        t.ok(
          s.every((m) => m['dist/buckets']! > 1),
          `${label}, rank ${rank}: several buckets (${s[0]!['dist/buckets']})`,
        )
        t.ok(
          s.every((m) => m['dist/buckets_started_before_last_hook']! >= 1),
          `${label}, rank ${rank}: buckets started before the backward's last gradient (${s.map((m) => m['dist/buckets_started_before_last_hook']).join(', ')} of ${s[0]!['dist/buckets']})`,
        )
        t.ok(
          rankSteps(off, rank).every((m) => m['dist/buckets'] === undefined),
          `${label}, rank ${rank}: overlap off reduces after the backward`,
        )
        const peak = Math.max(...s.map((m) => m['memory/peak_gradients_bytes']!))
        const peakOff = Math.max(...rankSteps(off, rank).map((m) => m['memory/peak_gradients_bytes']!))
        t.ok(peakOff >= fullGradBytes, `${label}, rank ${rank}: overlap off builds every gradient (peak ${peakOff} ≥ ${fullGradBytes} bytes)`)
        if (stage === 2) {
          const atRest = s[s.length - 1]!['memory/gradients_bytes']!
          t.ok(atRest < 0.6 * fullGradBytes, `${label}, rank ${rank}: after the step it holds only its own gradients (${atRest} of ${fullGradBytes} bytes)`)
          // Its own gradients, the (at most 2) non-owned buckets in flight, and the one being flattened.
          if (accum === 1)
            t.ok(
              peak < fullGradBytes && peak <= atRest + 3 * bucketBytes,
              `${label}, rank ${rank}: peak gradient bytes ${peak} < the full ${fullGradBytes}, within its own ${atRest} + 3 buckets of ≤ ${bucketBytes}: non-owned gradients freed`,
            )
        }
      }
    }
  }
})

t.test('the reducer names what it is given wrong', async (t) => {
  const work = tempDir(t)
  const env = { rank: 0, worldSize: 1, localRank: 0, store: { kind: 'file' as const, path: path.join(work, 'store') }, source: 'torchrun' as const }
  const group = await DistGroup.join(env, { device: 'cpu', timeoutSeconds: 10 })
  const w = Tensor.from(new Float32Array([1, 2, 3]), [3], { requiresGrad: true })
  t.throws(() => group.gradReducer([w], { bucketBytes: 1024, owners: [0, 0] }), /o\.owners: expected one rank per parameter \(1\), got 2/)
  t.throws(() => group.gradReducer([w], { bucketBytes: 0 }), /bucketBytes/)
  t.throws(() => nativeAddon().distReducerArm({} as NativeReducer), /reducer: expected a gradient reducer handle/)
  // A one-rank reducer over a parameter that the backward never reached: its gradient is zero.
  const reducer = group.gradReducer([w], { bucketBytes: 1024 })
  reducer.arm()
  const stats = await reducer.finish()
  t.equal(stats.buckets, 1)
  t.equal(stats.startedInBackward, 0, 'no backward ran, so finish started the bucket')
})
