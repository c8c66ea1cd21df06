// One colour per method across every chart (the demo's curves, its win-rate plot, bench/paper's
// Pareto plots): a series is recognised by its name, in the spellings the CLI ('epsilon-dpo') and
// the reports ('ε-DPO (ε = 0.01)') use. Variants of one method (ε, TR-DPO's mode) are shades of its
// hue; the bf16 step decision is drawn dashed in the same colour.
import { PALETTE } from './svg'

export interface SeriesStyle {
  color: string
  /** SVG stroke-dasharray, for the bf16-criterion variants. */
  dash?: string
}

const DPO = '#4c78a8'
const EPSILON: Record<string, string> = { '0.005': '#ffbf79', '0.01': '#f58518', '0.02': '#b35806' }
const TR_SOFT = '#e45756'
const TR_HARD = '#9e2a2b'
const BETA_DPO = '#54a24b'
const REFERENCE = '#888888'
// The paper's comparison set (docs/methods.md), by the titles the registry gives them.
const BASELINES: [RegExp, string][] = [
  [/^ipo\b/, '#72b7b2'],
  [/^simpo\b/, '#b279a2'],
  [/^cpo\b/, '#d4a800'],
  [/^orpo\b/, '#ff9da6'],
  [/^r-dpo\b/, '#9d755d'],
  [/^(slic-hf|hinge)\b/, '#17becf'],
  [/^rrhf\b/, '#8c8c1a'],
  [/^kto\b/, '#5e3c99'],
]

/** The style of a series named after its method (unknown names get a stable palette colour). */
export function seriesStyle(name: string): SeriesStyle {
  const n = name.toLowerCase()
  const dash = /bf16/.test(n) ? '6 3' : undefined
  const style = (color: string): SeriesStyle => (dash ? { color, dash } : { color })
  if (/^(β-dpo|beta-dpo)/.test(n)) return style(BETA_DPO)
  if (/^tr-dpo/.test(n)) return style(/hard/.test(n) ? TR_HARD : TR_SOFT)
  if (/^(ε-dpo|epsilon-dpo)/.test(n)) {
    const eps = /ε\s*=\s*([0-9.]+)/.exec(n)?.[1]
    return style((eps && EPSILON[String(Number(eps))]) ?? EPSILON['0.01']!)
  }
  if (/^dpo\b/.test(n)) return style(DPO)
  if (/^reference/.test(n)) return style(REFERENCE)
  for (const [re, color] of BASELINES) if (re.test(n)) return style(color)
  let h = 0
  for (const ch of n) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0
  return style(PALETTE[6 + (h % 4)]!)
}
