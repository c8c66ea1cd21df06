// TensorBoard event files (events.out.tfevents.*), written directly: no maintained npm writer
// exists. The format: a sequence of TFRecords (u64 length, masked CRC32C of the length, the bytes,
// masked CRC32C of the bytes), each an Event protobuf: wall_time (1, double), step (2, int64),
// file_version (3, string) in the first record, summary (5) with Summary.Value {tag (1), simple_value (2, float)}.
// Each record is appended and flushed as it is made, so a killed run keeps what it logged.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { fileError } from './fs-errors'

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[i] = c >>> 0
  }
  return t
})()

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff
  for (const b of bytes) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant (so CRCs of CRCs stay strong). */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes)
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0
}

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n))
  const out: number[] = []
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return out
}

function lengthDelimited(field: number, bytes: Uint8Array): number[] {
  return [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes]
}

function event(wallTime: number, step: number, body: number[]): Uint8Array {
  const wall = Buffer.alloc(8)
  wall.writeDoubleLE(wallTime)
  return Uint8Array.from([0x09, ...wall, ...varint((2 << 3) | 0), ...varint(step), ...body])
}

function scalarValue(tag: string, value: number): Uint8Array {
  const f = Buffer.alloc(4)
  f.writeFloatLE(value)
  return Uint8Array.from([...lengthDelimited(1, Buffer.from(tag, 'utf8')), (2 << 3) | 5, ...f])
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12)
  header.writeBigUInt64LE(BigInt(data.length))
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8)
  const footer = Buffer.alloc(4)
  footer.writeUInt32LE(maskedCrc32c(data))
  return Buffer.concat([header, data, footer])
}

export class TensorBoardWriter {
  readonly file: string

  constructor(dir: string) {
    const host = os.hostname().replace(/[^\w.-]/g, '_')
    this.file = path.join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${host}.${process.pid}.0`)
    try {
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(this.file, tfRecord(event(Date.now() / 1000, 0, lengthDelimited(3, Buffer.from('brain.Event:2')))))
    } catch (e) {
      throw fileError('cannot write', this.file, e)
    }
  }

  /** One event with a scalar per finite metric (the tags are metrics.jsonl's names). */
  scalars(step: number, metrics: Readonly<Record<string, number>>): void {
    const values = Object.entries(metrics).filter(([k, v]) => k !== 'step' && Number.isFinite(v))
    if (values.length === 0) return
    const summary = values.flatMap(([k, v]) => lengthDelimited(1, scalarValue(k, v)))
    try {
      fs.appendFileSync(this.file, tfRecord(event(Date.now() / 1000, step, lengthDelimited(5, Uint8Array.from(summary)))))
    } catch (e) {
      throw fileError('cannot write', this.file, e)
    }
  }
}
