// --profile-steps A-B: where optimizer steps A..B spend their time. Two views, written to
// <out>/profile/steps-A-B/ (rank-R/ on several ranks) when step B ends:
//   sections.json / summary.md: the wall time of each part of the step (batch, forwards, loss,
//     backward, clip, optimizer, …), the device synchronised at each border so a section owns the
//     device work it queued;
//   trace.json (Chrome trace format, opens in Perfetto): libtorch's profiler over the same steps,
//     every ATen op on the host threads and, on CUDA, every kernel and copy; summary.md lists the
//     ops with the most self time (host) and the kernels with the most device time.
// Synchronising and recording slow the profiled steps down a little: profile a few steps after the
// first, and read the ratios, not the throughput.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { native } from '../core/errors'
import { nativeAddon, type NativeProfile } from '../core/native'
import { Tensor } from '../core/tensor'

/** A parsed --profile-steps: the first and last optimizer step (1-based, inclusive). */
export interface StepRange {
  first: number
  last: number
}

/** "A" or "A-B" (1 ≤ A ≤ B) → the range; undefined when the text is not one. */
export function parseStepRange(text: string): StepRange | undefined {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text)
  if (!m) return undefined
  const first = Number(m[1])
  const last = m[2] === undefined ? first : Number(m[2])
  return first >= 1 && last >= first && Number.isSafeInteger(last) ? { first, last } : undefined
}

/** One profiled step's sections, in the order they ended, in ms. */
export interface StepSections {
  step: number
  sections: [string, number][]
}

export class StepProfiler {
  private readonly steps: StepSections[] = []
  private current: StepSections | undefined
  private lapStart = 0
  private tracing = false

  constructor(
    readonly range: StepRange,
    private readonly device: string,
    /** Where the files go: <out>/profile (a rank's own folder below it on several ranks). */
    private readonly dir: string,
  ) {}

  /** Called as optimizer step `step` (1-based) starts; true when it is profiled. */
  beginStep(step: number): boolean {
    if (step < this.range.first || step > this.range.last) return false
    if (!this.tracing) {
      this.synchronize()
      native(() => nativeAddon().profilerStart(this.device.startsWith('cuda')))
      this.tracing = true
    }
    this.current = { step, sections: [] }
    this.lapStart = performance.now()
    return true
  }

  /** Ends the section running since the last lap (or the step's start) as `name`. */
  lap(name: string): void {
    if (!this.current) return
    this.synchronize()
    const now = performance.now()
    const s = this.current.sections
    // A section that repeats (micro-batches) adds up.
    const same = s.find(([n]) => n === name)
    if (same) same[1] += now - this.lapStart
    else s.push([name, now - this.lapStart])
    this.lapStart = now
  }

  /** Ends step `step`; after the range's last step, writes the files and returns the summary's path. */
  endStep(step: number): string | undefined {
    if (!this.current) return undefined
    this.lap('rest of the step')
    this.steps.push(this.current)
    this.current = undefined
    return step >= this.range.last ? this.finish() : undefined
  }

  /** Stops the profiler if it runs (a run that ended inside the range) and writes what it has. */
  finish(): string | undefined {
    if (!this.tracing) return undefined
    this.current = undefined
    this.tracing = false
    const events = native(() => nativeAddon().profilerStop())
    if (this.steps.length === 0) return undefined
    const first = this.steps[0]!.step
    const last = this.steps[this.steps.length - 1]!.step
    const dir = path.join(this.dir, first === last ? `step-${first}` : `steps-${first}-${last}`)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'sections.json'), JSON.stringify({ device: this.device, steps: this.steps }, null, 1) + '\n')
    fs.writeFileSync(path.join(dir, 'trace.json'), JSON.stringify(chromeTrace(events)))
    const summary = path.join(dir, 'summary.md')
    fs.writeFileSync(summary, summaryMarkdown(this.device, this.steps, events))
    return summary
  }

  // Device work queued so far is done when a value made after it reaches the host.
  private synchronize(): void {
    if (this.device === 'cpu') return
    const t = Tensor.zeros([1], { device: this.device })
    try {
      t.toArray()
    } finally {
      t.dispose()
    }
  }
}

/** The events as a Chrome trace: host ops on their threads (pid 0), device events (pid 1). */
export function chromeTrace(e: NativeProfile): { traceEvents: object[] } {
  const traceEvents: object[] = []
  for (let i = 0; i < e.names.length; i++) {
    const device = e.onDevice[i] === 1
    traceEvents.push({
      name: e.names[i],
      ph: 'X',
      ts: e.startUs[i],
      dur: e.durationUs[i],
      pid: device ? 1 : 0,
      tid: device ? 0 : e.thread[i],
      cat: device ? 'device' : 'host',
    })
  }
  traceEvents.push({ name: 'process_name', ph: 'M', pid: 0, args: { name: 'host' } }, { name: 'process_name', ph: 'M', pid: 1, args: { name: 'device' } })
  return { traceEvents }
}

interface OpTotal {
  name: string
  calls: number
  us: number
}

/**
 * Self time of each host op (its duration less that of the ops nested in it on the same thread),
 * summed by name; and device time of each device event, summed by name.
 */
export function opTotals(e: NativeProfile): { host: OpTotal[]; device: OpTotal[]; deviceBusyUs: number } {
  const host = new Map<string, OpTotal>()
  const device = new Map<string, OpTotal>()
  const add = (m: Map<string, OpTotal>, name: string, us: number) => {
    const t = m.get(name) ?? { name, calls: 0, us: 0 }
    t.calls += 1
    t.us += us
    m.set(name, t)
  }
  const byThread = new Map<number, number[]>()
  const deviceIdx: number[] = []
  for (let i = 0; i < e.names.length; i++) {
    if (e.onDevice[i] === 1) deviceIdx.push(i)
    else {
      const list = byThread.get(e.thread[i]!) ?? []
      list.push(i)
      byThread.set(e.thread[i]!, list)
    }
  }
  for (const list of byThread.values()) {
    // Outer ops first at equal starts; a stack of open ops gives each its parent.
    list.sort((a, b) => e.startUs[a]! - e.startUs[b]! || e.durationUs[b]! - e.durationUs[a]!)
    const self = new Map<number, number>()
    const stack: number[] = []
    for (const i of list) {
      while (stack.length > 0 && e.startUs[stack[stack.length - 1]!]! + e.durationUs[stack[stack.length - 1]!]! <= e.startUs[i]!) stack.pop()
      const parent = stack[stack.length - 1]
      if (parent !== undefined) self.set(parent, (self.get(parent) ?? e.durationUs[parent]!) - e.durationUs[i]!)
      self.set(i, self.get(i) ?? e.durationUs[i]!)
      stack.push(i)
    }
    for (const [i, us] of self) add(host, e.names[i]!, Math.max(0, us))
  }
  // Busy time: the union of the device intervals (overlapping streams count once).
  deviceIdx.sort((a, b) => e.startUs[a]! - e.startUs[b]!)
  let busy = 0
  let end = -Infinity
  for (const i of deviceIdx) {
    add(device, e.names[i]!, e.durationUs[i]!)
    const s = e.startUs[i]!
    const f = s + e.durationUs[i]!
    if (f <= end) continue
    busy += f - Math.max(s, end)
    end = f
  }
  const sorted = (m: Map<string, OpTotal>) => [...m.values()].sort((a, b) => b.us - a.us)
  return { host: sorted(host), device: sorted(device), deviceBusyUs: busy }
}

const TOP = 25

function summaryMarkdown(device: string, steps: StepSections[], events: NativeProfile): string {
  const names: string[] = []
  for (const s of steps) for (const [n] of s.sections) if (!names.includes(n)) names.push(n)
  const ms = (x: number) => x.toFixed(2)
  const wall = steps.map((s) => s.sections.reduce((a, [, v]) => a + v, 0))
  const lines = [`# Profile of step${steps.length > 1 ? 's' : ''} ${steps.map((s) => s.step).join(', ')} on ${device}`, '']
  lines.push('## Sections (ms; the device synchronised at each border)', '')
  lines.push(`| section | ${steps.map((s) => `step ${s.step}`).join(' | ')} | mean | share |`)
  lines.push(`|---|${steps.map(() => '---:|').join('')}---:|---:|`)
  const totalMean = wall.reduce((a, b) => a + b, 0) / steps.length
  for (const n of names) {
    const v = steps.map((s) => s.sections.find(([k]) => k === n)?.[1] ?? 0)
    const mean = v.reduce((a, b) => a + b, 0) / steps.length
    lines.push(`| ${n} | ${v.map(ms).join(' | ')} | ${ms(mean)} | ${((100 * mean) / totalMean).toFixed(1)}% |`)
  }
  lines.push(`| **step** | ${wall.map(ms).join(' | ')} | ${ms(totalMean)} | 100% |`, '')
  const { host, device: kernels, deviceBusyUs } = opTotals(events)
  const totalWall = wall.reduce((a, b) => a + b, 0)
  const hostOps = host.reduce((a, t) => a + t.calls, 0)
  lines.push(`Host ops recorded: ${hostOps} (${(hostOps / steps.length).toFixed(0)} per step).`)
  if (kernels.length > 0) {
    const launches = kernels.reduce((a, t) => a + t.calls, 0)
    lines.push(
      `Device events: ${launches} (${(launches / steps.length).toFixed(0)} per step); device busy ${ms(deviceBusyUs / 1000)} ms of ${ms(totalWall)} ms of profiled steps (${((100 * deviceBusyUs) / 1000 / totalWall).toFixed(1)}%).`,
    )
  }
  const table = (title: string, rows: OpTotal[]) => {
    lines.push('', `## ${title}`, '', '| op | calls | total ms | per step ms |', '|---|---:|---:|---:|')
    for (const r of rows.slice(0, TOP))
      lines.push(`| \`${r.name.replace(/\|/g, '\\|').slice(0, 120)}\` | ${r.calls} | ${ms(r.us / 1000)} | ${ms(r.us / 1000 / steps.length)} |`)
  }
  if (kernels.length > 0) table(`Device time by kernel (top ${TOP})`, kernels)
  table(`Host self time by op (top ${TOP})`, host)
  return lines.join('\n') + '\n'
}
