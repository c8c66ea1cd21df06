// TensorBoard event files, read back by a reader written here from the format's description
// (TFRecord framing with masked CRC32C; Event and Summary protobufs), independent of the writer.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { MetricsLog } from '../lib/train/metrics-log'
import { tempDir } from './helpers/data-fixtures'

// CRC32C bit by bit (Castagnoli, reflected polynomial 0x82F63B78): no table, unlike the writer.
function crc32cSlow(bytes: Uint8Array): number {
  let crc = 0xffffffff
  for (const b of bytes) {
    crc ^= b
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
  }
  return (crc ^ 0xffffffff) >>> 0
}
const masked = (b: Uint8Array) => {
  const c = crc32cSlow(b)
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0
}

interface Field {
  no: number
  wire: number
  value: bigint | Buffer
}
function fields(buf: Buffer): Field[] {
  const out: Field[] = []
  let i = 0
  const varint = () => {
    let v = 0n
    let shift = 0n
    for (;;) {
      const b = buf[i++]!
      v |= BigInt(b & 0x7f) << shift
      if (!(b & 0x80)) return v
      shift += 7n
    }
  }
  const take = (n: number) => {
    const v = buf.subarray(i, i + n)
    i += n
    return v
  }
  while (i < buf.length) {
    const key = Number(varint())
    const wire = key & 7
    const no = key >> 3
    if (wire === 0) out.push({ no, wire, value: varint() })
    else if (wire === 1) out.push({ no, wire, value: take(8) })
    else if (wire === 5) out.push({ no, wire, value: take(4) })
    else if (wire === 2) {
      const n = Number(varint())
      out.push({ no, wire, value: take(n) })
    } else throw new Error(`wire type ${wire}`)
  }
  return out
}

function readEvents(file: string) {
  const buf = fs.readFileSync(file)
  const events: { wallTime: number; step: number; fileVersion?: string; scalars: Record<string, number> }[] = []
  let i = 0
  while (i < buf.length) {
    const len = buf.subarray(i, i + 8)
    if (buf.readUInt32LE(i + 8) !== masked(len)) throw new Error('bad length crc')
    const n = Number(len.readBigUInt64LE())
    const data = buf.subarray(i + 12, i + 12 + n)
    if (buf.readUInt32LE(i + 12 + n) !== masked(data)) throw new Error('bad data crc')
    i += 16 + n
    const ev = { wallTime: 0, step: 0, fileVersion: undefined as string | undefined, scalars: {} as Record<string, number> }
    for (const f of fields(data)) {
      if (f.no === 1) ev.wallTime = (f.value as Buffer).readDoubleLE()
      if (f.no === 2) ev.step = Number(f.value as bigint)
      if (f.no === 3) ev.fileVersion = (f.value as Buffer).toString()
      if (f.no === 5)
        for (const v of fields(f.value as Buffer).filter((x) => x.no === 1)) {
          const inner = fields(v.value as Buffer)
          const tag = (inner.find((x) => x.no === 1)!.value as Buffer).toString()
          ev.scalars[tag] = (inner.find((x) => x.no === 2)!.value as Buffer).readFloatLE()
        }
    }
    events.push(ev)
  }
  return events
}

t.test('metrics go to an event file beside metrics.jsonl that a reader from the spec parses', async (t) => {
  const dir = tempDir(t)
  MetricsLog.configure(dir, { reportTo: 'tensorboard', runName: 'run-1' })
  const log = new MetricsLog(dir)
  log.write({ step: 1, loss: 0.7, 'rewards/accuracies': 0.5 })
  log.write({ step: 2, loss: 0.5, eval_loss: 0.25 })
  const files = fs.readdirSync(path.join(dir, 'run-1'))
  t.equal(files.length, 1)
  t.match(files[0], /^events\.out\.tfevents\.\d+\..+\.\d+\.0$/)
  const events = readEvents(path.join(dir, 'run-1', files[0]!))
  t.equal(events[0]!.fileVersion, 'brain.Event:2', 'the first record names the format version')
  t.equal(events.length, 3)
  t.equal(events[1]!.step, 1)
  t.ok(Math.abs(events[1]!.scalars.loss! - 0.7) < 1e-6, 'float32 scalar')
  t.equal(events[1]!.scalars['rewards/accuracies'], 0.5)
  t.same(events[2]!.scalars, { loss: 0.5, eval_loss: 0.25 })
  t.ok(Math.abs(events[2]!.wallTime - Date.now() / 1000) < 60, 'wall time in seconds')
  t.ok(fs.existsSync(path.join(dir, 'metrics.jsonl')), 'metrics.jsonl as before')
  t.throws(() => MetricsLog.configure(dir, { reportTo: 'none', loggingDir: 'x' }), /--logging-dir x .* add --report-to tensorboard/)
})
