// Child process for test/fuzz-native.test.ts: a deterministic generator of malformed calls over
// the public surface. Every case must throw (or reject) with a message naming what it expects;
// a crash shows up in the parent as a signal or non-zero exit. Prints one JSON summary line.
import * as fs from 'node:fs'
import { rng } from './reference'
import * as os from 'node:os'
import * as path from 'node:path'

import { CausalLM, io, ops, Tensor } from '../../lib/index'
import { parseModelConfig } from '../../lib/model/config'
import { nativeAddon, type NativeTensor } from '../../lib/core/native'
import { ids, tinyConfig, tinyWeights, writeTiny } from './tiny-models'

interface Case {
  label: string
  /** Substrings the error message must contain (case-insensitive). */
  expect: string[]
  run: () => unknown
}

const random = rng(Number(process.argv[2] ?? 10))
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-fuzz-'))
const disposed = (shape: number[] = [2]): Tensor => {
  const x = Tensor.zeros(shape)
  x.dispose()
  return x
}
const fakeHandle = (): Tensor => new Tensor(Object.create(nativeAddon().NativeTensor.prototype) as NativeTensor)
const protoOnly = (): Tensor => Object.create(Tensor.prototype) as Tensor
/** An own key that an object literal would turn into a prototype. */
function withOwn(o: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const copy = { ...o }
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true })
  return copy
}

const cases: Case[] = []
const add = (label: string, expect: string | string[], run: () => unknown): void => {
  cases.push({ label, expect: Array.isArray(expect) ? expect : [expect], run })
}

// Values that are never a valid integer dimension / index.
const badInts: unknown[] = [0.5, -1.5, NaN, Infinity, -Infinity, 1e20, -1e20, 2 ** 63, '0', '', null, {}, [], [0], true, 10n, Symbol('d')]
// Values that are never a Tensor.
const notTensors: [string, () => unknown][] = [
  ['undefined', () => undefined],
  ['null', () => null],
  ['number', () => 1],
  ['string', () => 'tensor'],
  ['array', () => [1, 2]],
  ['plain object', () => ({})],
  ['typed array', () => new Float32Array(2)],
  ['prototype-only Tensor', protoOnly],
  ['fake handle', fakeHandle],
  ['disposed', () => disposed()],
]
const show = (v: unknown): string => (typeof v === 'symbol' ? 'symbol' : typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v)))

// --- Tensor methods -------------------------------------------------------------------------
const x = Tensor.randn([2, 3])
for (const m of ['logSoftmax', 'softmax', 'unsqueeze', 'squeeze', 'argmax'] as const)
  for (const d of badInts) add(`x.${m}(${show(d)})`, 'dim', () => (x[m] as (d: unknown) => Tensor)(d))
for (const m of ['sum', 'mean', 'amax'] as const) {
  for (const d of badInts) {
    if (d === null || (Array.isArray(d) && d.length > 0)) continue // null = all dims; [0] is valid
    add(`x.${m}([${show(d)}])`, 'dims[0]', () => (x[m] as (d: unknown) => Tensor)([d]))
    if (typeof d !== 'object') add(`x.${m}(${show(d)})`, 'dim', () => (x[m] as (d: unknown) => Tensor)(d))
  }
  for (const k of ['yes', 1, 0, {}, null]) add(`x.${m}(0, ${show(k)})`, 'keepdim', () => (x[m] as (d: unknown, k: unknown) => Tensor)(0, k))
}
for (const d of badInts) {
  if (Array.isArray(d)) continue
  add(`x.reshape([${show(d)}])`, 'shape[0]', () => x.reshape([d as number]))
  add(`x.reshape([6, ${show(d)}])`, 'shape[1]', () => x.reshape([6, d as number]))
  add(`x.transpose(0, ${show(d)})`, 'dim1', () => x.transpose(0, d as number))
  add(`x.transpose(${show(d)}, 0)`, 'dim0', () => x.transpose(d as number, 0))
  add(`x.narrow(0, ${show(d)}, 1)`, 'start', () => x.narrow(0, d as number, 1))
  add(`x.narrow(0, 0, ${show(d)})`, 'length', () => x.narrow(0, 0, d as number))
  add(`x.gather(${show(d)}, idx)`, 'dim', () => x.gather(d as number, Tensor.zeros([2, 3], { dtype: 'int64' })))
  add(`Tensor.cat([x, x], ${show(d)})`, 'dim', () => Tensor.cat([x, x], d as number))
  add(`Tensor.stack([x, x], ${show(d)})`, 'dim', () => Tensor.stack([x, x], d as number))
}
for (const bad of [[-2], [7], [4, 4], [1, 2, 4]]) add(`x.reshape(${show(bad)})`, 'reshape', () => x.reshape(bad))
for (const bad of ['abc', 6, {}, null]) add(`x.reshape(${show(bad)})`, 'shape', () => x.reshape(bad as never))
for (const m of ['add', 'sub', 'mul', 'div', 'pow', 'gt', 'lt', 'eq', 'matmul', 'logicalAnd', 'copyInPlace'] as const) {
  for (const [what, make] of notTensors) {
    if (what === 'number' && !['matmul', 'logicalAnd', 'copyInPlace'].includes(m)) continue // scalars are valid there
    const want = m === 'copyInPlace' ? 'source' : 'other'
    add(`x.${m}(${what})`, what === 'disposed' ? [want, 'disposed'] : want, () => (x[m] as (o: unknown) => Tensor)(make()))
  }
  if (m !== 'matmul' && m !== 'logicalAnd') add(`x.${m}([4,5])`, m, () => (x[m] as (o: unknown) => Tensor)(Tensor.zeros([4, 5])))
}
add('x.matmul([4,5])', 'matmul', () => x.matmul(Tensor.zeros([4, 5])))
for (const [what, make] of notTensors) {
  add(`x.where(${what}, x)`, 'condition', () => x.where(make() as Tensor, x))
  add(`x.where(cond, ${what})`, 'other', () => x.where(Tensor.zeros([2, 3], { dtype: 'bool' }), make() as Tensor))
  add(`x.maskedFill(${what}, 0)`, 'mask', () => x.maskedFill(make() as Tensor, 0))
  add(`x.gather(0, ${what})`, 'index', () => x.gather(0, make() as Tensor))
  add(`Tensor.cat([x, ${what}])`, 'tensors', () => Tensor.cat([x, make() as Tensor]))
  add(`Tensor.stack([${what}])`, 'tensors', () => Tensor.stack([make() as Tensor]))
}
for (const v of ['0', null, {}, undefined])
  add(`x.maskedFill(mask, ${show(v)})`, 'value', () => x.maskedFill(Tensor.zeros([2, 3], { dtype: 'bool' }), v as number))
add('x.gather(0, float index)', 'gather', () => x.gather(0, Tensor.zeros([2, 3])))
add('Tensor.cat mismatched', 'tensors', () => Tensor.cat([x, Tensor.zeros([2, 4])], 0))
add('Tensor.cat not an array', 'tensors', () => Tensor.cat('x' as never))
add('Tensor.stack not an array', 'tensors', () => Tensor.stack({} as never))
for (const dtype of ['float', 'FLOAT32', '', 'int4', 'cuda:x', 'complex64', '__proto__', 'toString']) add(`x.to(${show(dtype)})`, 'to', () => x.to(dtype))
for (const [a, b] of [
  ['float32', 'bfloat16'],
  ['float32', 'int64'],
  ['cpu', 'cpu'],
  ['cpu', 'float32'],
  ['float32', 'gpu'],
])
  add(`x.to(${a}, ${b})`, 'device', () => x.to(a!, b))
for (const extra of ['cpu', 'float32', 1, null])
  add(`x.to('float32', 'cpu', ${show(extra)})`, 'to', () => (x.to as (...a: unknown[]) => Tensor)('float32', 'cpu', extra))
for (const v of [1, 0, 'true', null, undefined, {}])
  add(`x.requiresGrad = ${show(v)}`, 'requiresGrad', () => ((x as { requiresGrad: unknown }).requiresGrad = v))
{
  const leaf = Tensor.zeros([2])
  leaf.requiresGrad = true
  add('nonleaf.requiresGrad = false', 'requiresGrad', () => (leaf.mul(2).requiresGrad = false))
  add('nonleaf.requiresGrad = true', 'requiresGrad', () => (leaf.mul(2).requiresGrad = true))
  add('int.requiresGrad = true', 'requiresGrad', () => (Tensor.zeros([2], { dtype: 'int32' }).requiresGrad = true))
  add('backward() without grad', 'backward', () => Tensor.zeros([1]).backward())
  add('item() of many', 'item', () => x.item())
}
for (const [what, make] of [
  ['prototype-only', protoOnly],
  ['fake handle', fakeHandle],
] as const) {
  for (const m of ['shape', 'dtype', 'device', 'numel', 'grad', 'disposed'] as const) add(`${what}.${m}`, 'tensor', () => make()[m])
  for (const m of ['item', 'toArray', 'backward', 'zeroGrad', 'dispose', 'neg', 'exp', 'clone', 'detach'] as const)
    add(`${what}.${m}()`, 'tensor', () => (make()[m] as () => unknown).call(make()))
}
for (const m of ['shape', 'dtype', 'device', 'numel', 'grad'] as const) add(`disposed.${m}`, 'disposed', () => disposed()[m])
for (const m of ['item', 'toArray', 'backward', 'zeroGrad', 'neg', 'exp', 'clone', 'sum'] as const)
  add(`disposed.${m}()`, 'disposed', () => (disposed()[m] as () => unknown).call(disposed()))
add('disposed.to()', 'disposed', () => disposed().to('float64'))
add('disposed.requiresGrad = true', 'disposed', () => (disposed().requiresGrad = true))

// --- factories --------------------------------------------------------------------------------
for (const d of badInts) {
  if (d === null || (Array.isArray(d) && d.length > 0) || d === 0.5 || (typeof d === 'number' && Number.isInteger(d) && d >= 0 && d < 2 ** 53)) {
    // fall through to the cases below; these shapes are covered elsewhere
  }
  if (Array.isArray(d)) continue
  add(`Tensor.zeros([${show(d)}])`, 'shape', () => Tensor.zeros([d as number]))
  add(`Tensor.randn([2, ${show(d)}])`, 'shape', () => Tensor.randn([2, d as number]))
  add(`Tensor.full([${show(d)}], 1)`, 'shape', () => Tensor.full([d as number], 1))
}
add('Tensor.zeros([-1])', 'shape', () => Tensor.zeros([-1]))
for (const v of ['1', null, {}, undefined, [1]]) add(`Tensor.full([2], ${show(v)})`, 'value', () => Tensor.full([2], v as number))
for (const o of [{ dtype: 'float' }, { device: 'gpu' }, { requiresGrad: true }, { foo: 1 }, 'float32', 1])
  add(`Tensor.zeros([2], ${show(o)})`, 'opts', () => Tensor.zeros([2], o as never))
for (const data of [[1, 2], 'ab', null, new Int16Array(2), new Uint16Array(2), {}])
  add(`Tensor.from(${show(data)})`, 'data', () => Tensor.from(data as never, [2]))
add('Tensor.from length mismatch', 'data', () => Tensor.from(new Float32Array(3), [2]))
for (const shape of [[1.5], [NaN], ['2'], 'abc', null, [-2]])
  add(`Tensor.from(f32, ${show(shape)})`, 'shape', () => Tensor.from(new Float32Array(2), shape as never))
add('Tensor.from int requiresGrad', 'requiresGrad', () => Tensor.from(new Int32Array(2), [2], { requiresGrad: true }))
for (const seed of [-1, 0.5, NaN, '1', null, 2 ** 64]) add(`Tensor.manualSeed(${show(seed)})`, 'seed', () => Tensor.manualSeed(seed as number))

// --- ops ----------------------------------------------------------------------------------------
const [B, T, V, H] = [1, 3, 5, 4]
const lossArgs = (): Record<string, unknown> => ({
  policyLogits: Tensor.randn([2 * B, T, V]),
  referenceLogits: Tensor.randn([2 * B, T, V]),
  labels: Tensor.zeros([2 * B, T], { dtype: 'int64' }),
  lossMask: Tensor.full([2 * B, T], 1),
  beta: 0.1,
  epsilon: 0.01,
})
const hiddenArgs = (): Record<string, unknown> => ({
  policyHidden: Tensor.randn([2 * B, T, H]),
  policyHead: Tensor.randn([V, H]),
  referenceHidden: Tensor.randn([2 * B, T, H]),
  referenceHead: Tensor.randn([V, H]),
  labels: Tensor.zeros([2 * B, T], { dtype: 'int64' }),
  lossMask: Tensor.full([2 * B, T], 1),
  beta: 0.1,
  epsilon: 0.01,
})
const seqArgs = (): Record<string, unknown> => {
  const a = lossArgs()
  delete a.beta
  return a
}
type OpFn = (a: never) => unknown
const opSpecs: [string, OpFn, () => Record<string, unknown>, string[], string[], string[]][] = [
  [
    'epsilonDpoLoss',
    ops.epsilonDpoLoss as OpFn,
    lossArgs,
    ['policyLogits', 'referenceLogits', 'labels', 'lossMask'],
    [],
    ['beta', 'epsilon', 'labelSmoothing'],
  ],
  ['epsilonDpoLossAsync', ops.epsilonDpoLossAsync as OpFn, lossArgs, ['policyLogits', 'labels'], [], ['beta', 'epsilon']],
  [
    'epsilonDpoLossFromHidden',
    ops.epsilonDpoLossFromHidden as OpFn,
    hiddenArgs,
    ['policyHidden', 'policyHead', 'referenceHidden', 'referenceHead', 'labels', 'lossMask'],
    ['policyBias', 'referenceBias'],
    ['beta', 'epsilon', 'labelSmoothing', 'finalLogitSoftcap', 'chunkTokens'],
  ],
  ['epsilonDpoLossFromHiddenAsync', ops.epsilonDpoLossFromHiddenAsync as OpFn, hiddenArgs, ['policyHidden', 'lossMask'], ['policyBias'], ['chunkTokens']],
  ['sequenceLogps', ops.sequenceLogps as OpFn, seqArgs, ['policyLogits', 'referenceLogits', 'labels', 'lossMask'], [], ['epsilon']],
]
const badNumbers: unknown[] = [NaN, Infinity, -Infinity, -1, -1e-300, '0.1', null, {}, [0.1], true, 10n]
for (const [name, fn, good, tensorFields, optionalTensors, numberFields] of opSpecs) {
  for (const field of [...tensorFields, ...optionalTensors]) {
    for (const [what, make] of notTensors) {
      if (what === 'undefined' && optionalTensors.includes(field)) continue // an absent bias is valid
      add(`${name}(${field}: ${what})`, what === 'disposed' ? [field, 'disposed'] : field, () => fn({ ...good(), [field]: make() } as never))
    }
  }
  // Wrong rank and dtype for each required tensor.
  for (const field of tensorFields) {
    add(`${name}(${field}: rank 1)`, field, () => fn({ ...good(), [field]: Tensor.zeros([7]) } as never))
    add(`${name}(${field}: rank 4)`, field, () => fn({ ...good(), [field]: Tensor.zeros([2, 3, 4, 5]) } as never))
  }
  for (const field of numberFields) {
    for (const v of badNumbers) {
      if (v === -1 && field === 'finalLogitSoftcap') continue
      add(`${name}(${field}: ${show(v)})`, field, () => fn({ ...good(), [field]: v } as never))
    }
  }
  for (const key of ['temperature', '__proto__', 'constructor', 'toString', 'hasOwnProperty'])
    add(`${name}(+${key})`, key, () => fn(withOwn(good(), key, 1) as never))
  for (const a of [undefined, null, 1, 'x', []]) add(`${name}(${show(a)})`, name.replace(/Async$/, ''), () => fn(a as never))
  const missing = tensorFields[0]!
  add(`${name}(no ${missing})`, missing, () => {
    const a = good()
    delete a[missing]
    return fn(a as never)
  })
}
// Seeded random combinations: a random field of a random op gets a random bad value or a tensor of
// a rank no op accepts there (0, 1, 4 or 5), with random small sizes.
for (let i = 0; i < 300; i++) {
  const [name, fn, good, tensorFields, optionalTensors, numberFields] = pick(opSpecs)
  const all = [...tensorFields, ...optionalTensors, ...numberFields]
  const field = pick(all)
  if (numberFields.includes(field)) {
    const v = pick(badNumbers)
    add(`random ${i}: ${name}(${field}: ${show(v)})`, field, () => fn({ ...good(), [field]: v } as never))
  } else if (random() < 0.5) {
    const [what, make] = pick(notTensors)
    if (what === 'undefined' && optionalTensors.includes(field)) continue
    add(`random ${i}: ${name}(${field}: ${what})`, field, () => fn({ ...good(), [field]: make() } as never))
  } else {
    const shape = Array.from({ length: pick([0, 1, 4, 5]) }, () => 1 + Math.floor(random() * 3))
    const dtype = pick(['float32', 'float64', 'int64', 'bool'] as const)
    add(`random ${i}: ${name}(${field}: ${dtype}${show(shape)})`, field, () => fn({ ...good(), [field]: Tensor.zeros(shape, { dtype }) } as never))
  }
}
for (let i = 0; i < 100; i++) {
  const frac = Math.floor(random() * 4) + 0.25 + random() / 2 // never an integer
  const m = pick(['logSoftmax', 'softmax', 'unsqueeze', 'squeeze', 'argmax'] as const)
  add(`random ${i}: x.${m}(${frac})`, 'dim', () => (x[m] as (d: number) => Tensor)(frac))
  const shape = [6, frac]
  add(`random ${i}: x.reshape(${show(shape)})`, 'shape[1]', () => x.reshape(shape))
}

// Tensors of the wrong dtype where the op checks dtypes.
add('epsilonDpoLoss(labels int32)', 'labels', () => ops.epsilonDpoLoss({ ...lossArgs(), labels: Tensor.zeros([2 * B, T], { dtype: 'int32' }) } as never))
add('epsilonDpoLoss(policyLogits int32)', 'policyLogits', () =>
  ops.epsilonDpoLoss({
    ...lossArgs(),
    policyLogits: Tensor.zeros([2 * B, T, V], { dtype: 'int32' }),
    referenceLogits: Tensor.zeros([2 * B, T, V], { dtype: 'int32' }),
  } as never),
)
add('epsilonDpoLoss(referenceLogits float64)', 'referenceLogits', () =>
  ops.epsilonDpoLoss({ ...lossArgs(), referenceLogits: Tensor.zeros([2 * B, T, V], { dtype: 'float64' }) } as never),
)
add('epsilonDpoLoss(lossMask 3-D)', 'lossMask', () => ops.epsilonDpoLoss({ ...lossArgs(), lossMask: Tensor.full([2 * B, T, 1], 1) } as never))
for (const v of [V, V + 100, -1, -100])
  add(`epsilonDpoLoss(labels = ${v})`, 'labels', () => ops.epsilonDpoLoss({ ...lossArgs(), labels: Tensor.full([2 * B, T], v, { dtype: 'int64' }) } as never))

// --- io -----------------------------------------------------------------------------------------
function writeRaw(name: string, header: unknown, dataBytes = 0): string {
  const file = path.join(tmp, name)
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(json.length))
  fs.writeFileSync(file, Buffer.concat([prefix, json, Buffer.alloc(dataBytes)]))
  return file
}
const entry = (o: Record<string, unknown>) => ({ dtype: 'F32', shape: [2], data_offsets: [0, 8], ...o })
const headerCases: [string, unknown, string][] = [
  ['metadata array', { __metadata__: ['a'] }, '__metadata__'],
  ['metadata string', { __metadata__: 'a' }, '__metadata__'],
  ['metadata null', { __metadata__: null }, '__metadata__'],
  ['metadata number value', { __metadata__: { a: 1 } }, '__metadata__.a'],
  ['metadata nested', { __metadata__: { a: { b: 'c' } } }, '__metadata__.a'],
  ['header array', [1, 2], 'header'],
  ['header string', '"abc"', 'header'],
  ['header not json', '{abc', 'header'],
  ['header null', 'null', 'header'],
]
for (const [field, values] of [
  ['dtype', ['F8', 'f32', 1, null, 'toString', '__proto__']],
  ['shape', [[-1], [1.5], 'x', null, [NaN], [2 ** 60]]],
  ['data_offsets', [[0], [8, 0], [0, 9], [-8, 0], 'x', null, [0, 8, 16], [0.5, 8.5]]],
] as const)
  for (const v of values) headerCases.push([`${field} ${show(v)}`, { w: entry({ [field]: v }) }, "tensor 'w'"])
headerCases.push(['entry not object', { w: 5 }, "tensor 'w'"])
headerCases.push(['entry null', { w: null }, "tensor 'w'"])
headerCases.push(['overlap', { a: entry({}), b: entry({}) }, "tensor '"])
headerCases.push(['proto entry', '{"__proto__": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]}}', "tensor '__proto__'"])
headerCases.forEach(([label, header, field], i) => {
  const file = writeRaw(`h${i}.safetensors`, header, 8)
  add(`loadSafetensors(${label})`, [file, field], () => io.loadSafetensors(file))
  add(`loadSafetensorsAsync(${label})`, [file, field], () => io.loadSafetensorsAsync(file))
  add(`readSafetensorsHeader(${label})`, [file, field], () => io.readSafetensorsHeader(file))
})
{
  const short = path.join(tmp, 'short.safetensors')
  fs.writeFileSync(short, Buffer.alloc(4))
  add('loadSafetensors(4-byte file)', short, () => io.loadSafetensors(short))
  const huge = path.join(tmp, 'huge.safetensors')
  const prefix = Buffer.alloc(16)
  prefix.writeBigUInt64LE(2n ** 62n)
  fs.writeFileSync(huge, prefix)
  add('loadSafetensors(huge header length)', [huge, 'header length'], () => io.loadSafetensors(huge))
  add('loadSafetensors(missing)', path.join(tmp, 'missing'), () => io.loadSafetensors(path.join(tmp, 'missing')))
  add('loadSafetensors(dir)', [tmp, 'directory'], () => io.loadSafetensors(tmp))
  add('loadSafetensorsAsync(dir)', [tmp, 'directory'], () => io.loadSafetensorsAsync(tmp))
  for (const f of [1, null, {}, undefined, ['a']]) {
    add(`loadSafetensors(${show(f)})`, 'file', () => io.loadSafetensors(f as never))
    add(`saveSafetensors(${show(f)})`, 'file', () => io.saveSafetensors(f as never, {}))
  }
  const good = path.join(tmp, 'good.safetensors')
  io.saveSafetensors(good, { w: Tensor.zeros([2]) })
  for (const n of ['toString', '__proto__', 'constructor', 'valueOf', 'missing', ''])
    add(`loadSafetensorsAsync(good, [${n}])`, [good, n === '' ? "''" : n], () => io.loadSafetensorsAsync(good, [n]))
  for (const names of ['w', [1], {}, [null]]) add(`loadSafetensorsAsync(good, ${show(names)})`, 'names', () => io.loadSafetensorsAsync(good, names as never))
  const out = path.join(tmp, 'out.safetensors')
  for (const [what, make] of notTensors) add(`saveSafetensors({a: ${what}})`, 'tensors.a', () => io.saveSafetensors(out, { a: make() as Tensor }))
  add('saveSafetensors({__metadata__: t})', '__metadata__', () => io.saveSafetensors(out, { __metadata__: Tensor.zeros([1]) }))
  add('saveSafetensors(own __proto__ fake)', '__proto__', () => io.saveSafetensors(out, withOwn({}, '__proto__', {}) as never))
  for (const t of [null, 1, 'x', [Tensor.zeros([1])]]) add(`saveSafetensors(${show(t)})`, 'tensors', () => io.saveSafetensors(out, t as never))
  for (const m of [{ a: 1 }, { a: null }, { a: {} }])
    add(`saveSafetensors(metadata ${show(m)})`, 'metadata.a', () => io.saveSafetensors(out, { w: Tensor.zeros([1]) }, m as never))
  for (const m of [1, 'x', [1]]) add(`saveSafetensors(metadata ${show(m)})`, 'metadata', () => io.saveSafetensors(out, { w: Tensor.zeros([1]) }, m as never))
}

// --- model config -------------------------------------------------------------------------------
for (const type of ['toString', '__proto__', 'constructor', 'valueOf', 'hasOwnProperty', 'LLAMA', 'gpt2', '', 1, null, undefined, ['llama']])
  add(`config model_type ${show(type)}`, ['config.json', 'model_type'], () => parseModelConfig(JSON.parse(`{"model_type": ${JSON.stringify(type) ?? 'null'}}`)))
for (const raw of [null, [], 'llama', 1]) add(`config ${show(raw)}`, 'config.json', () => parseModelConfig(raw))
for (const type of ['llama', 'mistral', 'qwen2', 'gemma2'])
  for (const [field, values] of [
    ['hidden_size', [-1, 0, 1.5, 'x', null]],
    ['vocab_size', [0, -5, 2.5, '10']],
    ['num_attention_heads', [0, 3.5, 'x']],
    ['num_hidden_layers', [0, -1, 0.5]],
    ['rms_norm_eps', [0, -1, 'x']],
    ['rope_theta', [0, -1, 'x']],
    ['tie_word_embeddings', ['yes', 1]],
    ['rope_scaling', ['linear', 5, { rope_type: 'yarn', factor: 2 }, { rope_type: 'linear' }, { factor: -1 }]],
  ] as const)
    for (const v of values) {
      const want = field === 'rope_scaling' ? 'rope_scaling' : field
      add(`config ${type}.${field} = ${show(v)}`, ['config.json', want], () => parseModelConfig({ model_type: type, [field]: v }))
    }

// --- run ----------------------------------------------------------------------------------------
// A tiny model's forward: malformed input ids, masks and positions.
async function addModelCases(): Promise<void> {
  const c = tinyConfig('llama')
  const model = await CausalLM.fromPretrained(writeTiny(path.join(tmp, 'tiny'), c, tinyWeights(c)))
  const good = ids([[1, 2, 3]])
  const bad: [string, string, () => unknown][] = [
    ['float32', 'inputIds', () => model.forward(Tensor.zeros([1, 3]))],
    ['rank 1', 'inputIds', () => model.forward(good.reshape([3]))],
    ['id past vocab', 'inputIds', () => model.forward(ids([[1, 2, c.vocab_size]]))],
    ['negative id', 'inputIds', () => model.forward(ids([[1, -2, 3]]))],
    ['positions float', 'positionIds', () => model.forward(good, { positionIds: Tensor.zeros([1, 3]) })],
    ['positions float64', 'positionIds', () => model.forward(good, { positionIds: Tensor.zeros([1, 3], { dtype: 'float64' }) })],
    ['positions bool', 'positionIds', () => model.forward(good, { positionIds: Tensor.zeros([1, 3], { dtype: 'bool' }) })],
    ['positions shape', 'positionIds', () => model.forward(good, { positionIds: ids([[0, 1]]) })],
    ['mask shape', 'attentionMask', () => model.forward(good, { attentionMask: Tensor.zeros([1, 4]) })],
    ['async positions float', 'positionIds', () => model.forwardAsync(good, { positionIds: Tensor.zeros([1, 3]) })],
  ]
  for (const [what, field, run] of bad) add(`model.forward(${what})`, field, run)
  for (const [what, make] of notTensors) {
    add(`model.forward(${what})`, 'inputIds', () => model.forward(make() as Tensor))
    if (what !== 'undefined') {
      add(`model.forward(positionIds: ${what})`, 'positionIds', () => model.forward(good, { positionIds: make() as Tensor }))
      add(`model.forward(attentionMask: ${what})`, 'attentionMask', () => model.forward(good, { attentionMask: make() as Tensor }))
    }
  }
}

async function main(): Promise<void> {
  await addModelCases()
  const failures: string[] = []
  for (const c of cases) {
    let message: string | undefined
    try {
      const r = c.run()
      if (r instanceof Promise) await r
    } catch (e) {
      message = e instanceof Error ? e.message : `non-Error thrown: ${String(e)}`
    }
    if (message === undefined) failures.push(`${c.label}: accepted`)
    else {
      const lower = message.toLowerCase()
      const missing = c.expect.filter((s) => !lower.includes(s.toLowerCase()))
      if (missing.length > 0) failures.push(`${c.label}: message ${JSON.stringify(message)} does not name ${missing.join(', ')}`)
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true })
  console.log(JSON.stringify({ total: cases.length, failures }))
}
void main()
