// lib/core/ops-generated.ts is generated from the built addon's op table (csrc/js_op_table.cc); this
// fails when the two drift apart (run `node scripts/gen-op-types.js` after changing the table).
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { ops, Tensor } from '../lib/index'
import { nativeAddon } from '../lib/core/native'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const gen = require('../scripts/gen-op-types.js') as { generate(d: unknown): string; loadDeclarations(): unknown; target: string }

t.test('the committed lib/core/ops-generated.ts equals a fresh generation from the addon', (t) => {
  t.equal(fs.readFileSync(path.join(__dirname, '..', 'lib', 'core', 'ops-generated.ts'), 'utf8'), gen.generate(nativeAddon().opDeclarations()))
  t.end()
})

// The dist* entries of csrc/js_dist.cc are still typed by hand (lib/core/native.ts).

t.test('the addon is exactly the declared entries: each bound as its mode says, Tensor.op methods on tensors', (t) => {
  const decls = nativeAddon().opDeclarations()
  const addon = nativeAddon() as unknown as Record<string, unknown>
  const expected = new Set(['NativeTensor', 'opDeclarations'])
  const x = Tensor.zeros([2])
  for (const op of decls.ops) {
    if (op.call === 'method') {
      t.equal(addon[op.name], undefined, `${op.name}: a Tensor.op method, not on the module`)
      // Known to the tensor's op dispatch: a wrong first argument (or one too many) is named, not an unknown op.
      const first = op.args[0]
      if (first === undefined) t.throws(() => x.handle.op(op.name, 1), { message: new RegExp(`^${op.name}: expected at most 0 arguments`) }, op.name)
      else t.throws(() => x.handle.op(op.name, ...op.args.map(() => Symbol('bad'))), { message: new RegExp(`^${first.name}: `) }, op.name)
      continue
    }
    expected.add(op.name)
    t.type(addon[op.name], 'function', op.name)
    if (op.mode === 'syncAndAsync') expected.add(`${op.name}Async`)
    else t.equal(addon[`${op.name}Async`], undefined, `${op.name}: no Async twin`)
  }
  t.same(
    Object.keys(addon).filter((k) => !expected.has(k)),
    [],
    'no entry outside the table',
  )
  t.same(
    [...expected].filter((k) => !(k in addon)),
    [],
    'every declared entry bound',
  )
  t.throws(() => x.handle.op('nope'), /op: unknown tensor op 'nope'/)
  t.same([...ops.PAIR_RECORD_COLUMNS], decls.pairRecordColumns)
  t.end()
})

t.test('the readers of the kinds beyond the ops: positional counts, options objects, host arrays, bounds', (t) => {
  const raw = nativeAddon() as unknown as Record<string, (...a: unknown[]) => unknown>
  t.throws(() => raw.setThreads!(1, 2), /^setThreads: expected at most 1 arguments \(threads\), got 2/)
  t.throws(() => raw.setThreads!(0), /^threads: must be >= 1, got 0/)
  t.throws(() => raw.manualSeed!(-1), /^seed: must be >= 0, got -1/)
  t.throws(() => raw.fromArray!([1, 2], [2]), /^data: expected a typed array/)
  t.throws(() => raw.fromArray!(new Int16Array(2), [2]), /^data: expected Float32Array, Float64Array/)
  t.throws(() => raw.fromArray!(new Float32Array(3), [2]), /^data: has 3 elements but shape \[2\] needs 2/)
  t.throws(() => raw.full!([2], 1, 'float33'), /^dtype: unknown dtype 'float33'/)
  t.throws(() => raw.writeTensors!('/nonexistent/x', 'abc', []), /^header: expected a Uint8Array/)
  t.throws(() => raw.createModel!({ modelType: 'llama' }, [], []), /^vocabSize: missing \(expected a number\)/)
  t.throws(
    () => raw.readTensors!({ path: 'x', entries: [{ name: 'a', dtype: 'float32', shape: [1], offset: 0, nbytes: 4, extra: 1 }] }),
    /^entries\[0\]: unknown field 'extra'/,
  )
  t.throws(
    () => raw.readTensors!({ path: 'x', entries: [{ name: 'a', dtype: 'float32', shape: [-1], offset: 0, nbytes: 4 }] }),
    /^entries\[\]\.shape\[0\]: expected an integer >= 0/,
  )
  t.throws(() => raw.modelClone!({}), /^model: expected a model handle/)
  const stats = nativeAddon().memoryStats()
  t.type(stats.tensorBytes, 'number')
  t.type(nativeAddon().runtime().libtorchVersion, 'string')
  t.type(nativeAddon().storageBytes([Tensor.zeros([4]).handle]), 'number')
  t.end()
})

t.test('the generic reader names missing, mistyped and unknown arguments', (t) => {
  const hidden = Tensor.zeros([2, 3, 4])
  const head = Tensor.zeros([5, 4])
  const labels = Tensor.zeros([2, 3], { dtype: 'int64' })
  const lossMask = Tensor.full([2, 3], 1)
  const args = { policyHidden: hidden, policyHead: head, labels, lossMask }
  t.equal(ops.sequenceStatsFromHidden(args).logps.shape[0], 2)
  const call = (a: Record<string, unknown>) => () => ops.sequenceStatsFromHidden(a as unknown as Parameters<typeof ops.sequenceStatsFromHidden>[0])
  t.throws(call({ ...args, labels: undefined }), { name: 'EdpoInputError', message: /^labels: missing \(expected a Tensor\)/ })
  t.throws(call({ ...args, chunkTokens: '4' }), { name: 'EdpoInputError', message: /^chunkTokens: expected a number/ })
  t.throws(call({ ...args, chunkTokens: 2.5 }), { name: 'EdpoInputError', message: /^chunkTokens: expected an integer/ })
  t.throws(call({ ...args, head }), { name: 'EdpoInputError', message: /sequenceStatsFromHidden: unknown argument 'head'/ })
  t.throws(call({ ...args, policyBias: {} }), { name: 'EdpoInputError', message: /^policyBias: expected a Tensor/ })
  const dead = Tensor.zeros([5])
  dead.dispose()
  t.throws(call({ ...args, policyBias: dead }), { name: 'EdpoInputError', message: /policyBias/ })
  t.rejects(ops.sequenceStatsFromHiddenAsync({ ...args, finalLogitSoftcap: -1 }), { name: 'EdpoInputError', message: /^finalLogitSoftcap:/ })
  t.end()
})

t.test('list arguments: entries are named by index, null only where the declaration allows it', (t) => {
  const p = Tensor.zeros([3])
  const args = {
    params: [p],
    master: [null],
    expAvg: [Tensor.zeros([3])],
    expAvgSq: [Tensor.zeros([3])],
    step: 1,
    lr: 0.1,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
  }
  t.doesNotThrow(() => ops.adamwStep(args))
  const call = (a: Record<string, unknown>) => () => ops.adamwStep(a as unknown as Parameters<typeof ops.adamwStep>[0])
  t.throws(call({ ...args, expAvg: [null] }), { name: 'EdpoInputError', message: /^expAvg\[0\]: expected a Tensor/ })
  t.throws(call({ ...args, master: [1] }), { name: 'EdpoInputError', message: /^master\[0\]: expected a Tensor/ })
  t.throws(call({ ...args, params: p }), { name: 'EdpoInputError', message: /^params: expected an array of Tensors/ })
  t.throws(call({ ...args, step: 1.5 }), { name: 'EdpoInputError', message: /^step: expected an integer/ })
  t.throws(call({ ...args, lr: -1 }), { name: 'EdpoInputError', message: /^lr: must be a finite number >= 0/ })
  t.end()
})
