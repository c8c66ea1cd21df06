// io.saveSafetensors / io.loadSafetensors: round trips of every dtype, the exact byte layout of the
// format, and clear errors on damaged files.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { EdpoInputError, io, Tensor } from '../lib/index'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-st-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('round trip keeps names, dtypes, shapes, values and metadata', (t) => {
  const values = new Float32Array([0.5, -1.25, 3, 1e-3, 7, -8])
  const tensors: Record<string, Tensor> = {
    'model.embed_tokens.weight': Tensor.from(values, [2, 3], { dtype: 'bfloat16' }),
    half: Tensor.from(values, [6], { dtype: 'float16' }),
    f32: Tensor.from(values, [3, 2]),
    f64: Tensor.from(values, [6], { dtype: 'float64' }),
    ids: Tensor.from(new BigInt64Array([1n, 2n, 3n]), [3]),
    i32: Tensor.from(new Int32Array([-1, 5]), [2]),
    flags: Tensor.from(new Uint8Array([1, 0, 1]), [3], { dtype: 'bool' }),
    scalar: Tensor.from(new Float32Array([4]), []),
    empty: Tensor.zeros([0, 4]),
  }
  const file = path.join(dir, 'model.safetensors')
  io.saveSafetensors(file, tensors, { format: 'pt' })
  const header = io.readSafetensorsHeader(file)
  t.same(header.metadata, { format: 'pt' })
  t.equal(header.dataStart % 8, 0, 'data section is 8-byte aligned')
  const loaded = io.loadSafetensors(file)
  t.same(Object.keys(loaded).sort(), Object.keys(tensors).sort())
  for (const [name, want] of Object.entries(tensors)) {
    const got = loaded[name]!
    t.equal(got.dtype, want.dtype, `${name} dtype`)
    t.same(got.shape, want.shape, `${name} shape`)
    t.same(Array.from(got.toArray() as ArrayLike<unknown>), Array.from(want.toArray() as ArrayLike<unknown>), `${name} values`)
  }
  t.end()
})

t.test('byte layout follows the format: u64 LE header size, JSON header, raw little-endian data', (t) => {
  const file = path.join(dir, 'layout.safetensors')
  io.saveSafetensors(file, { a: Tensor.from(new Float32Array([1, 2]), [2]), b: Tensor.from(new Float32Array([3]), [1], { dtype: 'bfloat16' }) })
  const bytes = fs.readFileSync(file)
  const n = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))
  t.same(header.a, { dtype: 'F32', shape: [2], data_offsets: [0, 8] })
  t.same(header.b, { dtype: 'BF16', shape: [1], data_offsets: [8, 10] })
  const data = bytes.subarray(8 + n)
  t.equal(data.length, 10)
  t.equal(data.readFloatLE(0), 1)
  t.equal(data.readFloatLE(4), 2)
  t.equal(data.readUInt16LE(8), 0x4040, 'bf16 bits of 3.0')
  t.end()
})

t.test('async load reads a subset', async (t) => {
  const file = path.join(dir, 'subset.safetensors')
  io.saveSafetensors(file, { x: Tensor.zeros([4]), y: Tensor.full([2], 9) })
  const got = await io.loadSafetensorsAsync(file, ['y'])
  t.same(Object.keys(got), ['y'])
  t.same(Array.from(got.y!.toArray() as Float32Array), [9, 9])
  await t.rejects(io.loadSafetensorsAsync(file, ['z']), /no tensor named 'z'/)
})

/** Writes `bytes` to `file` and returns its path. */
function writeFile(file: string, bytes: Buffer): string {
  fs.writeFileSync(file, bytes)
  return file
}

function writeRaw(name: string, header: unknown, data: Buffer, sizeOverride?: number): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(sizeOverride ?? json.length))
  const file = path.join(dir, name)
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]))
  return file
}

t.test('damaged files give errors naming the file and tensor', (t) => {
  const eight = Buffer.alloc(8)
  const cases: [string, string, RegExp][] = [
    ['short', writeFile(path.join(dir, 'short'), Buffer.alloc(3)), /short: not a safetensors file: 3 bytes/],
    ['huge header', writeRaw('huge', {}, eight, 1 << 30), /header length 1073741824 exceeds the file/],
    ['bad json', writeRaw('json', '{"a": ', eight), /header is not valid JSON/],
    ['dtype', writeRaw('dtype', { w: { dtype: 'F8', shape: [2], data_offsets: [0, 8] } }, eight), /tensor 'w': unsupported dtype "F8"/],
    [
      'size',
      writeRaw('size', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight),
      /tensor 'w': data_offsets span 8 bytes but float32 \[3\] needs 12/,
    ],
    ['past end', writeRaw('end', { w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, eight), /tensor 'w': data ends at byte 16, past the end/],
    [
      'overlap',
      writeRaw('overlap', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight),
      /tensor 'b': data starts at byte 4, expected 8/,
    ],
    ['hole', writeRaw('hole', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, eight), /data section has 8 bytes but the tensors cover 4/],
    ['shape', writeRaw('shape', { a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, eight), /tensor 'a': shape must be/],
    ['missing', path.join(dir, 'does-not-exist.safetensors'), /does-not-exist.safetensors: cannot open/],
  ]
  for (const [name, file, pattern] of cases) {
    t.throws(() => io.loadSafetensors(file), EdpoInputError, name)
    t.throws(() => io.loadSafetensors(file), pattern, name)
  }
  t.end()
})

t.test('save is atomic: a failed write leaves the old file and no temporary', (t) => {
  const file = path.join(dir, 'atomic.safetensors')
  io.saveSafetensors(file, { a: Tensor.full([2], 1) })
  const disposed = Tensor.zeros([2])
  disposed.dispose()
  t.throws(() => io.saveSafetensors(file, { a: Tensor.full([2], 5), b: disposed }), /disposed/)
  t.same(Array.from(io.loadSafetensors(file).a!.toArray() as Float32Array), [1, 1])
  t.same(
    fs.readdirSync(dir).filter((f) => f.includes('.tmp')),
    [],
  )
  t.end()
})
