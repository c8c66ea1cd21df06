// The demo's outputs: results.json (everything measured), report.md (the results table, the ε-DPO
// β trajectory, the set-up and the plots) and two SVG plots (lib/eval/plots.ts).
import * as fs from 'node:fs'
import * as path from 'node:path'

import { curvesSpec, winRateKlSpec, writeSvg } from '../eval/plots'
import { METHODS, TRAIN_METHODS } from '../train/methods'
import type { DemoResult } from './result'

type ReportInput = Omit<DemoResult, 'files'>

const NAMES: Record<string, string> = { reference: 'reference (SFT)', ...Object.fromEntries(TRAIN_METHODS.map((n) => [n, METHODS[n].title])) }
const CURVE_METRICS: [string, string][] = [
  ['loss', 'loss'],
  ['rewards/accuracies', 'reward accuracy'],
  ['kl/beta', 'β'],
  ['kl/p_epsilon_steps', 'share of s = +1'],
  ['kl/n_epsilon_steps', 'share of s = −1'],
]

const pct = (x: number) => `${(100 * x).toFixed(1)}%`
const num = (x: number | undefined, digits = 3) => (x === undefined ? '–' : x.toFixed(digits))

/** The results table as rows of cells (header first). */
export function resultsTable(r: Pick<ReportInput, 'results'>): string[][] {
  const header = ['method', 'win rate vs ref', 'mean gold reward', 'KL(π‖π_ref)', 'held-out pref. acc.', 'final β', 'steps']
  const rows = r.results.map((m) => [
    NAMES[m.method] ?? m.method,
    pct(m.gold.winRate),
    num(m.gold.meanReward),
    num(m.gold.kl),
    m.preferenceAccuracy === undefined ? '–' : pct(m.preferenceAccuracy),
    m.finalBeta === undefined ? '–' : m.finalBeta.toPrecision(5),
    String(m.steps),
  ])
  return [header, ...rows]
}

/** The table padded for a terminal. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((r) => [...r[j]!].length)))
  const line = (r: string[]) => r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join('  ')
  return [line(rows[0]!), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n')
}

function markdownTable(rows: string[][]): string {
  return [
    `| ${rows[0]!.join(' | ')} |`,
    `|${rows[0]!.map((_, j) => (j === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')
}

function betaTrajectory(r: ReportInput): string {
  const curve = r.curves['epsilon-dpo']
  if (!curve || curve.length === 0) return ''
  const first = curve[0]!
  const last = curve[curve.length - 1]!
  const mean = (k: string) => curve.reduce((a, m) => a + (m[k] ?? 0), 0) / curve.length
  const final = r.results.find((m) => m.method === 'epsilon-dpo')?.finalBeta
  const every = Math.max(1, Math.ceil(curve.length / 10))
  const sampled = curve.filter((_, i) => i % every === 0 || i === curve.length - 1)
  return [
    '## ε-DPO: the β trajectory',
    '',
    `β starts at ${first['kl/beta']} and ends at ${final?.toPrecision(6)} after ${last.step} steps (β ← β/(1+ε·s̄) once per step, ε = ${r.config.epsilon}).`,
    `On average ${pct(mean('kl/p_epsilon_steps'))} of pairs per step had s = +1 (relax the KL penalty) and ${pct(mean('kl/n_epsilon_steps'))} had s = −1 (tighten it).`,
    '',
    '| step | β used | kl/p_epsilon_steps | kl/n_epsilon_steps | kl/avg_steps |',
    '|---:|---:|---:|---:|---:|',
    ...sampled.map(
      (m) =>
        `| ${m.step} | ${m['kl/beta']!.toPrecision(6)} | ${num(m['kl/p_epsilon_steps'])} | ${num(m['kl/n_epsilon_steps'])} | ${num(m['kl/avg_steps'], 4)} |`,
    ),
    '',
  ].join('\n')
}

export async function writeReport(out: string, r: ReportInput): Promise<DemoResult['files']> {
  const curveRows = Object.entries(r.curves).flatMap(([method, lines]) =>
    lines.flatMap((m) =>
      CURVE_METRICS.filter(([k]) => m[k] !== undefined).map(([k, label]) => ({ run: NAMES[method] ?? method, step: m.step, metric: label, value: m[k]! })),
    ),
  )
  const curvesFile = writeSvg(path.join(out, 'training-curves.svg'), curvesSpec('Preference training from the same SFT reference', curveRows))
  const points = r.results.map((m) => ({ method: NAMES[m.method] ?? m.method, kl: m.gold.kl, winRate: m.gold.winRate, label: `${pct(m.gold.winRate)}` }))
  const winFile = writeSvg(path.join(out, 'win-rate-vs-kl.svg'), winRateKlSpec('Gold-reward win rate against KL from the reference', points))
  const resultsFile = path.join(out, 'results.json')
  fs.writeFileSync(resultsFile, JSON.stringify(r, null, 2) + '\n')
  const c = r.config
  const totalSeconds = Object.values(r.seconds).reduce((a, b) => a + b, 0)
  const md = [
    '# edpo demo: ε-DPO, DPO and TR-DPO at toy scale',
    '',
    `Preset: ${c.quick ? '--quick' : 'full'}. Task: prompts ask to sort 4–6 digits ("4719=" → "1479"); the gold judge (${r.judge}) rewards the right digits, ascending order and the right length.`,
    `Reference: a llama (hidden ${c.hiddenSize}, ${c.layers} layers) trained from scratch with \`edpo sft\` for ${c.sftSteps} steps on imperfect demonstrations.`,
    `Preference data: 2 samples per prompt from the reference for ${c.trainPrompts} prompts, labelled by the judge: ${r.data.trainPairs} pairs (${r.data.ties} ties, ${r.data.empty} empty dropped); ${r.data.heldOutPairs} held-out labelled pairs.`,
    `Training: β = ${c.beta}, ε = ${c.epsilon}, learning rate ${c.learningRate}, batch ${c.batchSize}, ${c.epochs} epoch(s), seed ${c.seed}; TR-DPO soft (α = 0.6).`,
    `Evaluation: ${c.evalPrompts} held-out prompts, one sample each at temperature 1.0 from every model and from the reference. Win rate counts ties as ½. KL is the sequence-level estimate mean log π(y|x) − log π_ref(y|x) over the model's own samples, against the SFT reference. The reference row compares the reference with itself (another sampling seed).`,
    '',
    '## Results',
    '',
    markdownTable(resultsTable(r)),
    '',
    betaTrajectory(r),
    '## Plots',
    '',
    '![training curves](training-curves.svg)',
    '',
    '![win rate against KL](win-rate-vs-kl.svg)',
    '',
    `Time: ${totalSeconds.toFixed(1)} s (${Object.entries(r.seconds)
      .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
      .join(', ')}).`,
    '',
  ].join('\n')
  const reportFile = path.join(out, 'report.md')
  fs.writeFileSync(reportFile, md)
  return { report: reportFile, results: resultsFile, plots: [curvesFile, winFile] }
}
