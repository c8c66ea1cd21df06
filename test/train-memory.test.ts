// Training memory on the tiny model: the memory report (EDPO_MEMORY_REPORT=1) accounts for every
// live tensor byte in its categories (a tied lm_head counted once), and live tensor bytes do not
// drift: after step 2 (and 3) they equal those after step 1, with gradient accumulation too.
// Reading a checkpoint's tensors (weights, optimizer state) holds one batch at a time.
import * as path from 'node:path'

import t from 'tap'

import { io, Tensor } from '../lib/index'
import { nativeAddon } from '../lib/core/native'
import { AdamW } from '../lib/train/adamw'
import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { makeModelDir, tempDir, WORDS } from './helpers/data-fixtures'
import { tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'
import { writeToyPreferences } from './helpers/train-fixtures'

// A tied qwen2 (its lm_head is the embedding) over the fixtures' word vocabulary.
function tiedModel(tt: { teardown(fn: () => void): void }): { dir: string; params: number } {
  const dir = makeModelDir(tt)
  const config = tinyConfig('qwen2', { vocab_size: WORDS.length, hidden_size: 32, intermediate_size: 48, bos_token_id: 1, eos_token_id: 2 })
  const weights = tinyWeights(config, 3)
  writeTiny(dir, config, weights)
  const params = [...weights.values()].reduce((n, w) => n + w.numel, 0)
  // Disposed now, not by GC: the test counts every live tensor byte in the process.
  for (const w of weights.values()) w.dispose()
  return { dir, params }
}

t.test('the memory report splits live tensor bytes by owner; they do not grow from step to step', async (t) => {
  const previous = process.env.EDPO_MEMORY_REPORT
  process.env.EDPO_MEMORY_REPORT = '1'
  t.teardown(() => {
    if (previous === undefined) delete process.env.EDPO_MEMORY_REPORT
    else process.env.EDPO_MEMORY_REPORT = previous
  })
  const work = tempDir(t)
  const model = tiedModel(t)
  const out = path.join(work, 'run')
  const trainer = await Trainer.create(
    {
      model: model.dir,
      data: [writeToyPreferences(work, 24)],
      out,
      dtype: 'bfloat16',
      batchSize: 2,
      gradAccumulation: 3,
      maxSteps: 3,
      logEvery: 1,
      maxLength: 32,
    },
    { log: () => {} },
  )
  // The allocator's count when each step has finished (after zeroGrad: weights and optimizer state).
  const live: number[] = []
  trainer.on('step', () => live.push(nativeAddon().memoryStats().tensorBytes))
  await trainer.train()

  t.equal(live.length, 3)
  t.equal(live[1], live[0], 'live tensor bytes after step 2 equal those after step 1')
  t.equal(live[2], live[0], 'and after step 3')

  const steps = readMetrics(out).filter((m) => 'memory/tensors_bytes' in m)
  t.equal(steps.length, 3, 'every logged step has a memory report')
  const m = steps[0]!
  const n = model.params // bf16 parameters; the tied lm_head is the embedding, counted once
  t.equal(m['memory/policy_weights_bytes'], 2 * n, 'policy: 2 bytes per parameter')
  t.equal(m['memory/reference_weights_bytes'], 2 * n, 'reference: its own copy')
  t.equal(m['memory/master_weights_bytes'], 4 * n, 'fp32 master weights, once')
  t.equal(m['memory/optimizer_moments_bytes'], 8 * n, 'fp32 m and v')
  t.equal(m['memory/gradients_bytes'], 2 * n, 'bf16 gradients, no fp32 copies beside them')
  const known = ['policy_weights', 'reference_weights', 'master_weights', 'optimizer_moments', 'gradients', 'other'].reduce(
    (s, k) => s + m[`memory/${k}_bytes`]!,
    0,
  )
  t.equal(known, m['memory/tensors_bytes'], 'the categories add up to the live tensor bytes')
  t.ok(m['memory/peak_tensors_bytes']! >= m['memory/tensors_bytes']!, 'the step peak is at least what is live at its end')
  t.ok(m['memory/activations_bytes']! > 0, 'the forward keeps activations for the backward')
  t.ok(m['memory/rss_bytes']! > 0 && m['memory/peak_rss_bytes']! >= m['memory/rss_bytes']!, 'RSS and its peak')
  for (const s of steps.slice(1)) t.equal(s['memory/tensors_bytes'], m['memory/tensors_bytes'], `step ${s.step}: the same live tensor bytes`)
})

t.test('without EDPO_MEMORY_REPORT the metrics have no memory fields', async (t) => {
  const previous = process.env.EDPO_MEMORY_REPORT
  delete process.env.EDPO_MEMORY_REPORT
  t.teardown(() => {
    if (previous !== undefined) process.env.EDPO_MEMORY_REPORT = previous
  })
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const trainer = await Trainer.create(
    { model: tiedModel(t).dir, data: [writeToyPreferences(work, 8)], out, batchSize: 2, maxSteps: 1, logEvery: 1, maxLength: 32 },
    { log: () => {} },
  )
  await trainer.train()
  t.notOk(Object.keys(readMetrics(out)[0]!).some((k) => k.startsWith('memory/')))
})

t.test('a safetensors file is read a batch at a time: never all of it at once', async (t) => {
  const work = tempDir(t)
  const file = path.join(work, 'w.safetensors')
  const tensors = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`t${i}`, Tensor.full([64 * 1024], i)])) // 256 KiB each
  io.saveSafetensors(file, tensors)
  const addon = nativeAddon()
  const before = addon.memoryStats().tensorBytes
  addon.resetPeakMemory()
  const seen: string[][] = []
  io.readSafetensorsInBatches(
    file,
    (batch) => {
      seen.push(Object.keys(batch))
      for (const [name, x] of Object.entries(batch)) {
        t.equal(x.toArray()[0], Number(name.slice(1)), `${name} holds its values`)
        x.dispose()
      }
    },
    { batchBytes: 512 * 1024 },
  )
  t.same(
    seen,
    [
      ['t0', 't1'],
      ['t2', 't3'],
      ['t4', 't5'],
      ['t6', 't7'],
    ],
    'two tensors (512 KiB) per read, in file order',
  )
  t.ok(addon.memoryStats().peakTensorBytes - before <= 512 * 1024, 'at most one batch was alive')
  t.throws(() => io.readSafetensorsInBatches(file, () => {}, { batchBytes: 0 }), /batchBytes: expected a positive integer/)
  t.throws(() => io.readSafetensorsInBatches(file, () => {}, { names: ['nope'] }), /no tensor named 'nope'/)
})

t.test('AdamW.loadStateFiles restores what stateTensors() saved, into the existing state', async (t) => {
  const work = tempDir(t)
  const make = () => {
    const p = Tensor.from(new Float32Array([1, -2, 3, 0.5]), [4], { dtype: 'bfloat16', requiresGrad: true })
    return { p, opt: new AdamW([['w', p]], { weightDecay: 0.1 }) }
  }
  const a = make()
  for (let k = 0; k < 3; k++) {
    a.opt.zeroGrad()
    a.p.mul(a.p).sum().backward()
    await a.opt.step(0.01)
  }
  const file = path.join(work, 'optimizer.safetensors')
  io.saveSafetensors(file, a.opt.stateTensors())
  const b = make()
  b.opt.loadStateFiles([file], a.opt.stepCount)
  t.equal(b.opt.stepCount, 3)
  for (const [name, x] of Object.entries(a.opt.stateTensors()))
    t.same(Array.from(b.opt.stateTensors()[name]!.toArray() as Float32Array), Array.from(x.toArray() as Float32Array), name)
  io.saveSafetensors(file, { 'exp_avg.w': Tensor.zeros([4]) })
  t.throws(() => make().opt.loadStateFiles([file], 1), /optimizer state: missing tensor 'exp_avg_sq.w'/)
  io.saveSafetensors(file, { ...a.opt.stateTensors(), 'exp_avg.w': Tensor.zeros([5]) })
  t.throws(() => make().opt.loadStateFiles([file], 1), /'exp_avg.w' has shape \[5\], expected \[4\]/)
})
