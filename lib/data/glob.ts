// Minimal glob expansion for data paths (Node 20 has no fs.glob): `*`, `?`, `[...]` within one path
// segment and `**` for any number of directories. Matches are sorted so runs are reproducible.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from '../core/errors'

const MAGIC = /[*?[]/

function segmentRegExp(segment: string): RegExp {
  let re = ''
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = segment.indexOf(']', i + 1)
      if (end < 0) re += '\\['
      else {
        const body = segment
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')
        re += `[${body}]`
        i = end
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

function listDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true })
  } catch {
    return []
  }
}

function walk(dir: string, segments: readonly string[], out: string[]): void {
  if (segments.length === 0) {
    if (fs.existsSync(dir) && fs.statSync(dir).isFile()) out.push(dir)
    return
  }
  const [head, ...rest] = segments as [string, ...string[]]
  if (head === '**') {
    walk(dir, rest, out)
    for (const e of listDir(dir)) if (e.isDirectory() && !e.name.startsWith('.')) walk(path.join(dir, e.name), segments, out)
    return
  }
  if (!MAGIC.test(head)) {
    walk(path.join(dir, head), rest, out)
    return
  }
  const re = segmentRegExp(head)
  for (const e of listDir(dir)) {
    if (e.name.startsWith('.') && !head.startsWith('.')) continue
    if (re.test(e.name)) walk(path.join(dir, e.name), rest, out)
  }
}

/** Expands each pattern (a plain path or a glob) into files; a pattern with no match is an error. */
export function expandPaths(patterns: readonly string[], what = 'data'): string[] {
  const files: string[] = []
  for (const pattern of patterns) {
    if (!MAGIC.test(pattern)) {
      if (!fs.existsSync(pattern)) throw new EdpoInputError(`${what}: ${pattern}: no such file`)
      if (!fs.statSync(pattern).isFile()) throw new EdpoInputError(`${what}: ${pattern}: not a file`)
      files.push(pattern)
      continue
    }
    const absolute = path.isAbsolute(pattern)
    const segments = pattern.split(/[\\/]+/).filter((s) => s !== '' && s !== '.')
    const matches: string[] = []
    walk(absolute ? path.sep : '.', segments, matches)
    if (matches.length === 0) throw new EdpoInputError(`${what}: ${pattern}: no file matches`)
    files.push(...matches.map((m) => (absolute ? m : path.normalize(m))).sort())
  }
  return [...new Set(files)]
}
