// Reads preference rows from JSONL, JSON (an array) and Parquet files. Every row keeps its origin
// ("file:line", or "file:row N" for Parquet) so validation errors can point at it. A line that is
// not valid JSON becomes a row with `error` set rather than an exception: validation decides
// whether it stops the run or is skipped and counted.
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as zlib from 'node:zlib'

import { EdpoInputError } from '../core/errors'

export interface RawRow {
  /** "file:line" (JSONL, JSON) or "file:row N" (Parquet, 1-based). */
  source: string
  value?: unknown
  /** Set when the row could not be parsed; `value` is then absent. */
  error?: string
}

/** Reads one file; the format comes from the extension (.jsonl/.ndjson, .json, .parquet; JSON and JSONL also gzipped, .gz). */
export async function readFile(file: string): Promise<RawRow[]> {
  const ext = path.extname(file).toLowerCase()
  if (ext === '.parquet') return readParquet(file)
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return readJsonBuffer(file, fs.readFileSync(file))
  const inner = ext === '.gz' ? path.extname(file.slice(0, -3)).toLowerCase() : ''
  if (inner === '.jsonl' || inner === '.ndjson' || inner === '.json') return readJsonBuffer(file, gunzip(file))
  throw new EdpoInputError(`${file}: unknown data format '${ext}' (expected .jsonl, .ndjson, .json, .parquet, or .jsonl.gz / .json.gz)`)
}

// Hub datasets ship JSONL gzipped (Anthropic/hh-rlhf): inflated in memory, like the plain file is read.
function gunzip(file: string): Buffer {
  try {
    return zlib.gunzipSync(fs.readFileSync(file))
  } catch (e) {
    throw new EdpoInputError(`${file}: not a readable gzip file (${(e as Error).message})`, { cause: e })
  }
}

/** Reads files in order and concatenates their rows. */
export async function readFiles(files: readonly string[]): Promise<RawRow[]> {
  const rows: RawRow[] = []
  for (const f of files) rows.push(...(await readFile(f)))
  return rows
}

/**
 * JSON bytes: an array of rows, or (like `datasets`' json loader) one JSON value per line. Lines
 * are decoded one at a time, so JSONL files may exceed V8's ~512 MB string limit; an array may not.
 */
export function readJsonBuffer(file: string, bytes: Buffer): RawRow[] {
  let start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0
  let first = start
  while (first < bytes.length && (bytes[first] === 0x20 || bytes[first] === 0x09 || bytes[first] === 0x0a || bytes[first] === 0x0d)) first++
  if (bytes[first] === 0x5b /* [ */) return readJsonText(file, bytes.toString('utf8', start))
  const rows: RawRow[] = []
  for (let line = 1; start < bytes.length; line++) {
    let end = bytes.indexOf(0x0a, start)
    if (end < 0) end = bytes.length
    const text = bytes.toString('utf8', start, end)
    if (text.trim() !== '') rows.push(parseJson(`${file}:${line}`, text))
    start = end + 1
  }
  return rows
}

/** JSON text: an array of rows, or one JSON value per line. */
export function readJsonText(file: string, text: string): RawRow[] {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  const first = body.search(/\S/)
  if (first >= 0 && body[first] === '[') return readJsonArray(file, body, first)
  return readJsonLines(file, body)
}

function readJsonLines(file: string, text: string): RawRow[] {
  const rows: RawRow[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.trim() === '') continue
    rows.push(parseJson(`${file}:${i + 1}`, line))
  }
  return rows
}

function parseJson(source: string, text: string): RawRow {
  try {
    return { source, value: JSON.parse(text) as unknown }
  } catch (e) {
    return { source, error: `malformed JSON (${(e as Error).message})` }
  }
}

// Splits a top-level array into element texts without parsing them, so each element gets its own
// line number and a malformed element does not hide the others.
function readJsonArray(file: string, text: string, open: number): RawRow[] {
  const rows: RawRow[] = []
  let line = 1 + countNewlines(text, 0, open)
  let i = open + 1
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) {
      if (text[i] === '\n') line++
      i++
    }
  }
  skipSpace()
  if (text[i] === ']') return rows
  for (;;) {
    skipSpace()
    const start = i
    const startLine = line
    let depth = 0
    let inString = false
    for (; i < text.length; i++) {
      const c = text[i]!
      if (c === '\n') line++
      if (inString) {
        if (c === '\\') i++
        else if (c === '"') inString = false
      } else if (c === '"') inString = true
      else if (c === '{' || c === '[') depth++
      else if (c === '}' || c === ']') {
        if (depth === 0) break
        depth--
      } else if (c === ',' && depth === 0) break
    }
    if (i >= text.length) {
      rows.push({ source: `${file}:${startLine}`, error: 'malformed JSON (the array is not closed)' })
      return rows
    }
    rows.push(parseJson(`${file}:${startLine}`, text.slice(start, i)))
    if (text[i] === ']') {
      i++
      skipSpace()
      if (i < text.length) rows.push({ source: `${file}:${line}`, error: 'malformed JSON (text after the closing ])' })
      return rows
    }
    i++ // the comma
  }
}

function countNewlines(text: string, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) if (text.charCodeAt(i) === 10) n++
  return n
}

// hyparquet ships only ES modules; a real import() (which tsc would otherwise turn into require)
// keeps Node versions without require(esm) working.
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>

async function readParquet(file: string): Promise<RawRow[]> {
  const { parquetReadObjects } = (await importEsm('hyparquet')) as typeof import('hyparquet')
  const bytes = fs.readFileSync(file)
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
  let objects: Record<string, unknown>[]
  try {
    objects = await parquetReadObjects({ file: buffer })
  } catch (e) {
    throw new EdpoInputError(`${file}: not a readable Parquet file (${(e as Error).message})`, { cause: e })
  }
  return objects.map((value, i) => ({ source: `${file}:row ${i + 1}`, value }))
}
