// Inputs the binding used to accept silently or reject with a raw N-API/libtorch message: each
// is now an error that names the argument, field or file at fault (issue #10, items C and D).
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { CausalLM, io, ops, Tensor } from '../lib/index'
import { parseModelConfig } from '../lib/model/config'
import { nativeAddon, type NativeTensor } from '../lib/core/native'
import { ids, tinyConfig, tinyWeights, writeTiny } from './helpers/tiny-models'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-arg-errors-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

// A Tensor whose handle is an object that only inherits NativeTensor.prototype (a foreign handle).
function foreign(): Tensor {
  return new Tensor(Object.create(nativeAddon().NativeTensor.prototype) as NativeTensor)
}
function disposed(shape: number[] = [2]): Tensor {
  const x = Tensor.zeros(shape)
  x.dispose()
  return x
}

t.test('bias tensors without a live handle are errors, not "no bias"', (t) => {
  const [B, T, H, V] = [1, 2, 4, 5]
  const args = {
    policyHidden: Tensor.randn([2 * B, T, H]),
    policyHead: Tensor.randn([V, H]),
    referenceHidden: Tensor.randn([2 * B, T, H]),
    referenceHead: Tensor.randn([V, H]),
    labels: Tensor.zeros([2 * B, T], { dtype: 'int64' }),
    lossMask: Tensor.full([2 * B, T], 1),
    beta: 0.1,
    epsilon: 0.01,
  }
  const fakes: [string, () => unknown][] = [
    ['disposed', () => disposed([V])],
    ['prototype-only', () => Object.create(Tensor.prototype)],
    ['plain object', () => ({})],
    ['foreign handle', foreign],
  ]
  for (const field of ['policyBias', 'referenceBias']) {
    for (const [what, make] of fakes) {
      t.throws(() => ops.epsilonDpoLossFromHidden({ ...args, [field]: make() }), new RegExp(`${field}: `), `${field}: ${what}`)
    }
  }
  t.end()
})

t.test('non-integer and NaN dims are rejected, not truncated', (t) => {
  const x = Tensor.zeros([2, 3])
  t.throws(() => x.sum([0.5]), /dims\[0\]: expected an integer/)
  t.throws(() => x.sum(0.5), /dim: expected an integer/)
  t.throws(() => x.mean([NaN]), /dims\[0\]: expected an integer/)
  t.throws(() => x.reshape([6.5]), /shape\[0\]: expected an integer/)
  t.throws(() => x.reshape([NaN]), /shape\[0\]: expected an integer/)
  t.throws(() => x.reshape([Infinity]), /shape\[0\]: expected an integer/)
  t.throws(() => Tensor.cat([x, x], 0.5), /dim: expected an integer/)
  t.throws(() => Tensor.stack([x, x], NaN), /dim: expected an integer/)
  t.throws(() => x.transpose(0, 1.5), /dim1: expected an integer/)
  t.same(x.reshape([-1]).shape, [6], 'reshape keeps -1')
  t.end()
})

t.test('requiresGrad on a non-leaf or a disposed tensor throws', (t) => {
  const x = Tensor.zeros([2])
  x.requiresGrad = true
  const y = x.mul(2)
  t.throws(() => (y.requiresGrad = false), /requiresGrad: can only be set on a leaf/)
  t.ok(y.requiresGrad, 'unchanged')
  t.throws(() => (disposed().requiresGrad = true), /requiresGrad: the tensor was disposed/)
  t.throws(() => (Tensor.zeros([2], { dtype: 'int64' }).requiresGrad = true), /requiresGrad: only floating-point/)
  // The factories make tensors without gradients; the option used to be ignored.
  t.throws(() => Tensor.zeros([2], { requiresGrad: true } as never), /opts: .*requiresGrad/)
  t.end()
})

t.test('to() takes (dtype) / (device) / (dtype, device) only', (t) => {
  const x = Tensor.zeros([2])
  t.throws(() => x.to('float32', 'bfloat16'), /device: expected 'cpu', 'cuda' or 'cuda:N', got 'bfloat16'/)
  t.throws(() => x.to('cpu', 'cpu'), /device: unexpected after the device/)
  t.throws(() => (x.to as (...a: unknown[]) => Tensor)('float32', 'cpu', 'cpu'), /to: expected at most two arguments/)
  t.throws(() => x.handle.to('float32', 'cpu', 'float64'), /to: expected at most two arguments/)
  t.equal(x.to('float64', 'cpu').dtype, 'float64')
  t.end()
})

t.test('safetensors: __metadata__ must be an object and is not a tensor name', (t) => {
  const file = path.join(dir, 'meta-array.safetensors')
  const header = Buffer.from(JSON.stringify({ __metadata__: ['a'] }))
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(header.length))
  fs.writeFileSync(file, Buffer.concat([prefix, header]))
  t.throws(() => io.loadSafetensors(file), { message: `${file}: __metadata__ must be an object of strings` })

  const out = path.join(dir, 'reserved.safetensors')
  t.throws(() => io.saveSafetensors(out, { __metadata__: Tensor.zeros([1]) }), /tensors.__metadata__: reserved/)
  t.notOk(fs.existsSync(out), 'nothing written')
  t.throws(() => io.saveSafetensors(out, { a: disposed() }), /tensors.a: the tensor was disposed/)
  t.end()
})

t.test('safetensors: names are own keys; a directory is named as one', async (t) => {
  const file = path.join(dir, 'one.safetensors')
  io.saveSafetensors(file, { w: Tensor.zeros([2]) })
  for (const name of ['toString', '__proto__', 'constructor'])
    await t.rejects(io.loadSafetensorsAsync(file, [name]), { message: `${file}: names: no tensor named '${name}'` })
  t.throws(() => io.loadSafetensors(dir), { message: `${dir}: is a directory, not a safetensors file` })
  await t.rejects(io.loadSafetensorsAsync(dir), /is a directory/)
})

t.test('config.json model_type must be an own supported key', (t) => {
  for (const type of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
    const raw = JSON.parse(`{"model_type": ${JSON.stringify(type)}}`) as unknown
    t.throws(() => parseModelConfig(raw), new RegExp(`^config.json: model_type "${type}" is not supported`), type)
  }
  t.end()
})

t.test('float positionIds are rejected by name', async (t) => {
  const c = tinyConfig('llama')
  const model = await CausalLM.fromPretrained(writeTiny(path.join(dir, 'tiny'), c, tinyWeights(c)))
  const input = ids([[1, 2, 3]])
  t.throws(() => model.forward(input, { positionIds: Tensor.zeros([1, 3]) }), /positionIds: expected an int64 or int32 tensor, got float32/)
  t.ok(model.forward(input, { positionIds: ids([[0, 1, 2]]) }).logits, 'int64 positions still work')
})

t.test('foreign handles and coercion errors name the argument', (t) => {
  const x = Tensor.zeros([2])
  t.throws(() => x.add(foreign()), /other: expected a Tensor/)
  t.throws(() => foreign().shape, /tensor: not a Tensor with a native handle/)
  t.throws(() => (Object.create(Tensor.prototype) as Tensor).sum(), /tensor: not a Tensor with a native handle/)
  t.throws(() => Tensor.cat([x, foreign()]), /tensors\[1\]: expected a Tensor/)
  const base = {
    referenceLogits: Tensor.zeros([2, 1, 3]),
    labels: Tensor.zeros([2, 1], { dtype: 'int64' }),
    lossMask: Tensor.full([2, 1], 1),
    beta: 0.1,
    epsilon: 0,
  }
  t.throws(() => ops.epsilonDpoLoss({ ...base, policyLogits: foreign() }), /policyLogits: expected a Tensor/)
  // The raw addon: node-addon-api's "An array was expected" / "A number was expected" / "Invalid argument".
  const raw = nativeAddon()
  t.throws(() => x.handle.op('sum', {}), /dims: expected an integer or an array of integers/)
  t.throws(() => x.handle.op('sum', ['a']), /dims\[0\]: expected a number/)
  t.throws(() => x.handle.op('sum', undefined, 'yes'), /keepdim: expected a boolean/)
  t.throws(() => raw.cat([x.handle, Object.create(raw.NativeTensor.prototype) as NativeTensor], 0), /tensors\[1\]: expected a Tensor/)
  t.throws(() => raw.readTensors({ path: path.join(dir, 'x'), entries: [1 as never] }), /entries\[0\]: expected an object/)
  t.throws(() => x.handle.op('reshape', 'abc'), /shape: expected an array of integers/)
  t.end()
})

t.test('EDPO_CPU_ISA must name a kernel set', (t) => {
  const script = `require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'index'))}).Tensor.zeros([1])`
  const r = spawnSync(process.execPath, [...process.execArgv, '-e', script], {
    env: { ...process.env, EDPO_CPU_ISA: 'bogus' },
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.not(r.status, 0, 'the child failed')
  t.match(r.stderr, /EDPO_CPU_ISA: 'bogus' is not one of base, avx2, avx512/)
  t.end()
})
