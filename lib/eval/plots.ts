// The demo's and bench/paper's two plots as SVG files: training curves (one panel per metric, one
// line per run) and gold win rate against KL. Drawn by lib/eval/svg.ts, with no charting library,
// so `npm install edpo` stays light and the demo draws its plots wherever edpo installs.
import * as fs from 'node:fs'

import { seriesStyle } from './method-colors'
import { svgDocument, legend, linear, niceTicks, polyline, tickFormat, xAxis, yAxis, esc, px, FONT, type Panel } from './svg'

export interface CurveRow {
  run: string
  step: number
  metric: string
  value: number
}
export interface WinRateKlRow {
  method: string
  kl: number
  winRate: number
  label?: string
  /** Error bars: [low, high] of the KL and of the win rate (e.g. 95% confidence intervals). */
  klRange?: [number, number]
  winRateRange?: [number, number]
}

/** What to draw: a plot kind and its rows. */
export type PlotSpec = { kind: 'curves'; title: string; rows: readonly CurveRow[] } | { kind: 'win-rate-kl'; title: string; rows: readonly WinRateKlRow[] }

/** Training curves (moving averages): one panel per metric, one line per run. */
export function curvesSpec(title: string, rows: readonly CurveRow[]): PlotSpec {
  return { kind: 'curves', title, rows }
}

/** Win rate against KL(π‖π_ref), one point (or a line through a sweep) per method. */
export function winRateKlSpec(title: string, rows: readonly WinRateKlRow[]): PlotSpec {
  return { kind: 'win-rate-kl', title, rows }
}

/** Renders a plot to an SVG string. */
export function renderSvg(spec: PlotSpec): string {
  return spec.kind === 'curves' ? curvesSvg(spec.title, spec.rows) : winRateKlSvg(spec.title, spec.rows)
}

export function writeSvg(file: string, spec: PlotSpec): string {
  fs.writeFileSync(file, renderSvg(spec))
  return file
}

/** Centred moving average over `2·half + 1` values, fewer at the ends (vega's window frame [-half, half]). */
export function movingAverage(values: readonly number[], half = 4): number[] {
  return values.map((_, i) => {
    const window = values.slice(Math.max(0, i - half), i + half + 1)
    return window.reduce((a, b) => a + b, 0) / window.length
  })
}

const unique = (xs: readonly string[]): string[] => [...new Set(xs)]
const extent = (xs: readonly number[]): [number, number] => [Math.min(...xs), Math.max(...xs)]
// Colours follow the method, not the series' position, so a method looks the same in every chart.
const color = (name: string): string => seriesStyle(name).color

const LEFT = 80
const TOP = 40
const WIDTH = 420

function curvesSvg(title: string, all: readonly CurveRow[]): string {
  const rows = all.filter((r) => Number.isFinite(r.step) && Number.isFinite(r.value))
  const runs = unique(rows.map((r) => r.run))
  const metrics = unique(rows.map((r) => r.metric))
  const height = 140
  const gap = 24
  if (rows.length === 0) return svgDocument(LEFT + WIDTH + 20, TOP + 40, title, [`<text x="${LEFT}" y="${TOP + 20}" font-size="11" ${FONT}>no data</text>`])

  // Per-step values of small batches are noisy: each line is a centred moving average over 9 steps.
  const [minStep, maxStep] = extent(rows.map((r) => r.step))
  const xt = niceTicks(Math.min(0, minStep), maxStep, 6)
  const sx = linear(xt.lo, xt.hi, LEFT, LEFT + WIDTH)
  const body: string[] = []
  metrics.forEach((metric, m) => {
    const p: Panel = { x: LEFT, y: TOP + m * (height + gap), width: WIDTH, height }
    const lines = runs.map((run) => {
      const pts = rows.filter((r) => r.run === run && r.metric === metric).sort((a, b) => a.step - b.step)
      const smoothed = movingAverage(pts.map((r) => r.value))
      return pts.map((r, i) => [r.step, smoothed[i]!] as [number, number])
    })
    const values = lines.flat().map(([, v]) => v)
    // Each metric has its own y scale, not forced through zero (β moves in its third digit).
    const yt = niceTicks(...extent(values), 4)
    const sy = linear(yt.lo, yt.hi, p.y + height, p.y)
    body.push(yAxis(p, yt, tickFormat(yt.step), metric))
    const last = m === metrics.length - 1
    body.push(xAxis(p, xt, tickFormat(xt.step), last ? 'optimizer step' : undefined, last))
    lines.forEach((line, i) =>
      body.push(
        polyline(
          line.map(([s, v]) => [sx(s), sy(v)]),
          color(runs[i]!),
          seriesStyle(runs[i]!).dash,
        ),
      ),
    )
  })
  body.push(legend(LEFT + WIDTH + 24, TOP + 10, 'method', runs, runs.map(color)))
  const legendWidth = 24 + Math.max(60, ...runs.map((r) => 15 + 6 * [...r].length))
  return svgDocument(LEFT + WIDTH + legendWidth + 10, TOP + metrics.length * (height + gap) + 30, title, body)
}

function winRateKlSvg(title: string, all: readonly WinRateKlRow[]): string {
  const rows = all.filter((r) => Number.isFinite(r.kl) && Number.isFinite(r.winRate))
  const methods = unique(rows.map((r) => r.method))
  const p: Panel = { x: LEFT, y: TOP, width: WIDTH, height: 300 }
  if (rows.length === 0) return svgDocument(LEFT + WIDTH + 20, TOP + 40, title, [`<text x="${LEFT}" y="${TOP + 20}" font-size="11" ${FONT}>no data</text>`])

  // Both axes start at zero (or below, for a slightly negative sampled KL), as a Pareto plot reads.
  const [klLo, klHi] = extent(rows.flatMap((r) => [r.kl, ...(r.klRange ?? [])]))
  const [wLo, wHi] = extent(rows.flatMap((r) => [r.winRate, ...(r.winRateRange ?? [])]))
  const xt = niceTicks(Math.min(0, klLo), Math.max(0, klHi), 6)
  const yt = niceTicks(Math.min(0, wLo), Math.max(0, wHi), 6)
  const sx = linear(xt.lo, xt.hi, p.x, p.x + p.width)
  const sy = linear(yt.lo, yt.hi, p.y + p.height, p.y)
  const body = [
    yAxis(p, yt, tickFormat(yt.step, true), 'gold-reward win rate vs reference'),
    xAxis(p, xt, tickFormat(xt.step), 'KL(π‖π_ref), nats per sequence (from samples)'),
  ]
  methods.forEach((method) => {
    const c = color(method)
    const pts = rows.filter((r) => r.method === method).sort((a, b) => a.kl - b.kl)
    body.push(
      polyline(
        pts.map((r) => [sx(r.kl), sy(r.winRate)]),
        c,
        seriesStyle(method).dash,
      ),
    )
    for (const r of pts) {
      const [x, y] = [sx(r.kl), sy(r.winRate)]
      if (r.klRange) body.push(`<line x1="${px(sx(r.klRange[0]))}" y1="${px(y)}" x2="${px(sx(r.klRange[1]))}" y2="${px(y)}" stroke="${c}" stroke-width="1"/>`)
      if (r.winRateRange)
        body.push(`<line x1="${px(x)}" y1="${px(sy(r.winRateRange[0]))}" x2="${px(x)}" y2="${px(sy(r.winRateRange[1]))}" stroke="${c}" stroke-width="1"/>`)
      body.push(`<circle cx="${px(x)}" cy="${px(y)}" r="4" fill="${c}"/>`)
      if (r.label) body.push(`<text x="${px(x + 8)}" y="${px(y + 3)}" font-size="10" fill="${c}" ${FONT}>${esc(r.label)}</text>`)
    }
  })
  body.push(legend(LEFT + WIDTH + 24, TOP + 10, 'method', methods, methods.map(color)))
  const legendWidth = 24 + Math.max(60, ...methods.map((m) => 15 + 6 * [...m].length))
  return svgDocument(LEFT + WIDTH + legendWidth + 10, TOP + p.height + 50, title, body)
}
