// safetensors (https://github.com/huggingface/safetensors format): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__?}, then the raw bytes.
// The header is parsed and checked here; tensor bytes move natively between file and storage.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError, native } from '../core/errors'
import { type DType, nativeAddon } from '../core/native'
import { type OpMode, type OpReturn, runOp } from '../core/ops'
import { type Tensor, tensorProblem } from '../core/tensor'

const TO_DTYPE: Record<string, DType> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
}
const FROM_DTYPE: Record<DType, string> = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>
const ITEM_SIZE: Record<DType, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
}
const MAX_HEADER_BYTES = 100 * 1024 * 1024

export interface SafetensorsEntry {
  dtype: DType
  shape: number[]
  /** Byte range [begin, end) within the data section. */
  dataOffsets: [number, number]
}

export interface SafetensorsHeader {
  metadata: Record<string, string>
  tensors: Record<string, SafetensorsEntry>
  /** File offset where the data section starts. */
  dataStart: number
}

function bad(file: string, what: string): EdpoInputError {
  return new EdpoInputError(`${file}: ${what}`)
}

// Tensor names come from files and callers; '__proto__' must become a key, not a prototype.
function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true })
}

/** Reads and validates a safetensors header without touching the tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  if (typeof file !== 'string') throw new EdpoInputError(`file: expected a path string, got ${typeof file}`)
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch (e) {
    throw new EdpoInputError(`${file}: cannot open (${(e as Error).message})`, { cause: e })
  }
  // Reading a directory fails later with a bare EISDIR; say what it is.
  if (fs.fstatSync(fd).isDirectory()) {
    fs.closeSync(fd)
    throw bad(file, 'is a directory, not a safetensors file')
  }
  try {
    const size = fs.fstatSync(fd).size
    if (size < 8) throw bad(file, `not a safetensors file: ${size} bytes, shorter than the 8-byte header length`)
    const prefix = Buffer.alloc(8)
    fs.readSync(fd, prefix, 0, 8, 0)
    const headerBytes = Number(prefix.readBigUInt64LE(0))
    if (headerBytes > MAX_HEADER_BYTES || headerBytes > size - 8)
      throw bad(file, `not a safetensors file: header length ${headerBytes} exceeds the file (${size} bytes)`)
    const raw = Buffer.alloc(headerBytes)
    fs.readSync(fd, raw, 0, headerBytes, 8)
    let json: unknown
    try {
      json = JSON.parse(raw.toString('utf8'))
    } catch (e) {
      throw bad(file, `header is not valid JSON (${(e as Error).message})`)
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(file, 'header is not a JSON object')
    return parseHeader(file, json as Record<string, unknown>, 8 + headerBytes, size - 8 - headerBytes)
  } finally {
    fs.closeSync(fd)
  }
}

function parseHeader(file: string, json: Record<string, unknown>, dataStart: number, dataBytes: number): SafetensorsHeader {
  const metadata: Record<string, string> = {}
  const tensors: Record<string, SafetensorsEntry> = {}
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(file, '__metadata__ must be an object of strings')
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw bad(file, `__metadata__.${k} must be a string`)
        setOwn(metadata, k, v)
      }
      continue
    }
    const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    const where = `tensor '${name}'`
    if (typeof e !== 'object' || e === null) throw bad(file, `${where}: entry must be an object`)
    const dtype = typeof e.dtype === 'string' ? TO_DTYPE[e.dtype] : undefined
    if (!dtype) throw bad(file, `${where}: unsupported dtype ${JSON.stringify(e.dtype)}`)
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(file, `${where}: shape must be an array of non-negative integers`)
    const offsets = e.data_offsets
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(file, `${where}: data_offsets must be [begin, end]`)
    const [begin, end] = offsets as [number, number]
    const shape = e.shape as number[]
    const expected = shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[dtype]
    if (end - begin !== expected) throw bad(file, `${where}: data_offsets span ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${expected}`)
    if (end > dataBytes) throw bad(file, `${where}: data ends at byte ${end}, past the end of the file's data (${dataBytes})`)
    setOwn(tensors, name, { dtype, shape, dataOffsets: [begin, end] })
  }
  // The format requires the tensors to tile the data section exactly: no holes, no overlap.
  const spans = Object.entries(tensors).sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0])
  let cursor = 0
  for (const [name, t] of spans) {
    if (t.dataOffsets[0] !== cursor) throw bad(file, `tensor '${name}': data starts at byte ${t.dataOffsets[0]}, expected ${cursor} (overlap or hole)`)
    cursor = t.dataOffsets[1]
  }
  if (cursor !== dataBytes) throw bad(file, `data section has ${dataBytes} bytes but the tensors cover ${cursor}`)
  return { metadata, tensors, dataStart }
}

// The named tensors' bytes, read by the native op in either mode.
function readTensors<M extends OpMode>(file: string, header: SafetensorsHeader, names: readonly string[], mode: M): OpReturn<'readTensors', M> {
  const entries = names.map((name) => {
    const t = header.tensors[name]!
    return {
      name,
      dtype: t.dtype,
      shape: t.shape,
      offset: header.dataStart + t.dataOffsets[0],
      nbytes: t.dataOffsets[1] - t.dataOffsets[0],
    }
  })
  return runOp('readTensors', { path: file, entries }, mode)
}

function collect(names: readonly string[], handles: readonly Tensor[]): Record<string, Tensor> {
  const out: Record<string, Tensor> = {}
  names.forEach((n, i) => setOwn(out, n, handles[i]!))
  return out
}

/** @internal Bytes read per native call by the batch readers below: bounds what a reader holds beyond its result. */
export const READ_BATCH_BYTES = 256 * 1024 * 1024

// `names` (checked to exist) in file order, grouped into reads of at most `batchBytes` (a larger tensor alone).
function batches(file: string, header: SafetensorsHeader, names: readonly string[] | undefined, batchBytes: number): string[][] {
  if (names !== undefined && (!Array.isArray(names) || !names.every((n) => typeof n === 'string')))
    throw new EdpoInputError('names: expected an array of tensor names')
  if (!Number.isSafeInteger(batchBytes) || batchBytes < 1) throw new EdpoInputError(`batchBytes: expected a positive integer, got ${batchBytes}`)
  const wanted = names ?? Object.keys(header.tensors)
  for (const n of wanted) if (!Object.hasOwn(header.tensors, n)) throw bad(file, `names: no tensor named '${n}'`)
  const ordered = [...wanted].sort((a, b) => header.tensors[a]!.dataOffsets[0] - header.tensors[b]!.dataOffsets[0])
  const out: string[][] = []
  let bytes = Infinity
  for (const name of ordered) {
    const [begin, end] = header.tensors[name]!.dataOffsets
    if (bytes + (end - begin) > batchBytes) {
      out.push([])
      bytes = 0
    }
    out[out.length - 1]!.push(name)
    bytes += end - begin
  }
  return out
}

/**
 * Reads the named tensors (default: all) a batch of at most `batchBytes` at a time and hands each
 * batch to `visit`, which takes ownership (copy, convert or keep, then dispose what it drops): a
 * caller that copies into existing tensors never holds the file's contents twice.
 */
export function readSafetensorsInBatches(
  file: string,
  visit: (batch: Record<string, Tensor>) => void,
  opts: { names?: readonly string[]; batchBytes?: number } = {},
): void {
  const header = readSafetensorsHeader(file)
  for (const names of batches(file, header, opts.names, opts.batchBytes ?? READ_BATCH_BYTES))
    visit(collect(names, readTensors(file, header, names, 'sync').tensors))
}

/** readSafetensorsInBatches with each read on the thread pool. */
export async function readSafetensorsInBatchesAsync(
  file: string,
  visit: (batch: Record<string, Tensor>) => void | Promise<void>,
  opts: { names?: readonly string[]; batchBytes?: number } = {},
): Promise<void> {
  const header = readSafetensorsHeader(file)
  for (const names of batches(file, header, opts.names, opts.batchBytes ?? READ_BATCH_BYTES))
    await visit(collect(names, (await readTensors(file, header, names, 'async')).tensors))
}

/** Loads every tensor of a safetensors file onto the CPU (bf16/fp16 included, kept as stored). */
export function loadSafetensors(file: string): Record<string, Tensor> {
  const header = readSafetensorsHeader(file)
  const names = Object.keys(header.tensors)
  return collect(names, readTensors(file, header, names, 'sync').tensors)
}

/** loadSafetensors on the thread pool; `names` limits which tensors are read. */
export async function loadSafetensorsAsync(file: string, names?: readonly string[]): Promise<Record<string, Tensor>> {
  const header = readSafetensorsHeader(file)
  if (names !== undefined && (!Array.isArray(names) || !names.every((n) => typeof n === 'string')))
    throw new EdpoInputError('names: expected an array of tensor names')
  const wanted = names ?? Object.keys(header.tensors)
  for (const n of wanted) if (!Object.hasOwn(header.tensors, n)) throw bad(file, `names: no tensor named '${n}'`)
  return collect(wanted, (await readTensors(file, header, wanted, 'async')).tensors)
}

/**
 * Writes tensors (moved to the CPU, made contiguous) and optional string metadata to `file`,
 * atomically: a temporary file in the same folder is renamed over the target.
 */
export function saveSafetensors(file: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  if (typeof file !== 'string') throw new EdpoInputError(`file: expected a path string, got ${typeof file}`)
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) throw new EdpoInputError('tensors: expected an object of named Tensors')
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)))
    throw new EdpoInputError('metadata: expected an object of strings')
  const header: Record<string, unknown> = {}
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new EdpoInputError(`metadata.${k}: must be a string`)
    header.__metadata__ = metadata
  }
  const names = Object.keys(tensors)
  let offset = 0
  for (const name of names) {
    // The header keeps this key for string metadata; a tensor under it could not be read back.
    if (name === '__metadata__') throw new EdpoInputError('tensors.__metadata__: reserved by safetensors for metadata, not a tensor name')
    const t = tensors[name]
    const problem = tensorProblem(t)
    if (problem !== undefined) throw new EdpoInputError(`tensors.${name}: ${problem}`)
    const tensor = t as Tensor
    const dtype = tensor.dtype
    const nbytes = tensor.numel * ITEM_SIZE[dtype]
    setOwn(header, name, { dtype: FROM_DTYPE[dtype], shape: tensor.shape, data_offsets: [offset, offset + nbytes] })
    offset += nbytes
  }
  // Pad the JSON with spaces so the data section starts 8-byte aligned, as the reference writer does.
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8)
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  try {
    native(() =>
      nativeAddon().writeTensors(
        tmp,
        new Uint8Array(Buffer.from(json, 'utf8')),
        names.map((n) => tensors[n]!.handle),
      ),
    )
    fs.renameSync(tmp, file)
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw e
  }
}
