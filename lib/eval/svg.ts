// The few SVG pieces edpo's two plots need (lib/eval/plots.ts): linear scales with "nice" ticks,
// axes, polylines, points, text and a colour legend. Hand-written so that drawing the demo's plots
// does not pull a charting library (vega and vega-lite were ~60 of the 126 packages `npm install edpo` brought).

/** Tableau 10, the categorical palette vega-lite uses by default: the plots keep their colours. */
export const PALETTE = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'] as const

export const FONT = 'font-family="sans-serif"'

/** Escapes text for SVG content and attribute values. */
export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** Coordinates rounded to 0.01 px: smaller files, no visible change. */
export const px = (x: number): string => String(Math.round(x * 100) / 100)

export interface Ticks {
  /** The axis domain, widened to whole steps. */
  lo: number
  hi: number
  step: number
  values: number[]
}

/**
 * About `count` ticks at 1, 2 or 5 × 10^k covering [min, max], the domain widened to whole steps
 * (what vega's `nice` does). A zero-width range is widened so that a constant series still draws.
 */
export function niceTicks(min: number, max: number, count = 5): Ticks {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new RangeError(`niceTicks: non-finite range [${min}, ${max}]`)
  if (max < min) [min, max] = [max, min]
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1
    min -= pad
    max += pad
  }
  const raw = (max - min) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag
  const lo = roundTo(Math.floor(min / step + 1e-9) * step, step)
  const hi = roundTo(Math.ceil(max / step - 1e-9) * step, step)
  const values: number[] = []
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) values.push(roundTo(lo + i * step, step))
  return { lo, hi, step, values }
}

// Removes float noise (0.30000000000000004) at the tick step's precision.
function roundTo(x: number, step: number): number {
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1)
  return Number(x.toFixed(Math.min(digits, 20)))
}

/** Tick labels with just the decimals the step needs, or as percentages. */
export function tickFormat(step: number, percent = false): (v: number) => string {
  const scale = percent ? 100 : 1
  const decimals = Math.max(0, -Math.floor(Math.log10(step * scale) + 1e-9))
  return (v) => {
    const s = (v * scale).toFixed(decimals)
    return (s === '-0' || /^-0\.0*$/.test(s) ? s.slice(1) : s) + (percent ? '%' : '')
  }
}

/** Maps [lo, hi] onto pixels [a, b] (b < a for a y axis that grows upwards). */
export function linear(lo: number, hi: number, a: number, b: number): (v: number) => number {
  return (v) => a + ((v - lo) / (hi - lo)) * (b - a)
}

export interface Panel {
  x: number
  y: number
  width: number
  height: number
}

/** A bottom axis: grid lines, tick labels and, when given, a title. */
export function xAxis(p: Panel, ticks: Ticks, format: (v: number) => string, title?: string, labels = true): string {
  const sx = linear(ticks.lo, ticks.hi, p.x, p.x + p.width)
  const bottom = p.y + p.height
  const parts = ticks.values.map((v) => {
    const x = px(sx(v))
    const grid = `<line x1="${x}" y1="${px(p.y)}" x2="${x}" y2="${px(bottom)}" stroke="#ddd"/>`
    const tick = `<line x1="${x}" y1="${px(bottom)}" x2="${x}" y2="${px(bottom + 5)}" stroke="#888"/>`
    return labels ? `${grid}${tick}<text x="${x}" y="${px(bottom + 16)}" text-anchor="middle" font-size="10" ${FONT}>${esc(format(v))}</text>` : grid + tick
  })
  parts.push(`<line x1="${px(p.x)}" y1="${px(bottom)}" x2="${px(p.x + p.width)}" y2="${px(bottom)}" stroke="#888"/>`)
  if (title)
    parts.push(`<text x="${px(p.x + p.width / 2)}" y="${px(bottom + 32)}" text-anchor="middle" font-size="11" font-weight="bold" ${FONT}>${esc(title)}</text>`)
  return parts.join('\n')
}

/** A left axis: grid lines, tick labels and, when given, a rotated title. */
export function yAxis(p: Panel, ticks: Ticks, format: (v: number) => string, title?: string): string {
  const sy = linear(ticks.lo, ticks.hi, p.y + p.height, p.y)
  const parts = ticks.values.map((v) => {
    const y = px(sy(v))
    return (
      `<line x1="${px(p.x)}" y1="${y}" x2="${px(p.x + p.width)}" y2="${y}" stroke="#ddd"/>` +
      `<line x1="${px(p.x - 5)}" y1="${y}" x2="${px(p.x)}" y2="${y}" stroke="#888"/>` +
      `<text x="${px(p.x - 7)}" y="${px(sy(v) + 3)}" text-anchor="end" font-size="10" ${FONT}>${esc(format(v))}</text>`
    )
  })
  parts.push(`<line x1="${px(p.x)}" y1="${px(p.y)}" x2="${px(p.x)}" y2="${px(p.y + p.height)}" stroke="#888"/>`)
  if (title) {
    const cx = px(p.x - 52)
    const cy = px(p.y + p.height / 2)
    parts.push(
      `<text x="${cx}" y="${cy}" transform="rotate(-90 ${cx} ${cy})" text-anchor="middle" font-size="11" font-weight="bold" ${FONT}>${esc(title)}</text>`,
    )
  }
  return parts.join('\n')
}

/** A polyline through the points, in order. */
export function polyline(points: readonly [number, number][], color: string, dash?: string): string {
  if (points.length === 0) return ''
  const d = points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${px(x)},${px(y)}`).join('')
  return `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`
}

/** The colour legend: a title and one swatch per series, at (x, y). */
export function legend(x: number, y: number, title: string, names: readonly string[], colors: readonly string[]): string {
  const parts = [`<text x="${px(x)}" y="${px(y)}" font-size="11" font-weight="bold" ${FONT}>${esc(title)}</text>`]
  names.forEach((name, i) => {
    const row = y + 16 + i * 16
    parts.push(
      `<circle cx="${px(x + 5)}" cy="${px(row - 4)}" r="5" fill="${colors[i]}"/><text x="${px(x + 15)}" y="${px(row)}" font-size="10" ${FONT}>${esc(name)}</text>`,
    )
  })
  return parts.join('\n')
}

/** The document around the parts: a white background and the title on top. */
export function svgDocument(width: number, height: number, title: string, body: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${px(width)}" height="${px(height)}" viewBox="0 0 ${px(width)} ${px(height)}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${px(width / 2)}" y="20" text-anchor="middle" font-size="13" font-weight="bold" ${FONT}>${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n')
}
