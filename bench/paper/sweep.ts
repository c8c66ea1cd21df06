// `npm run bench:paper -- --seeds K`: the paper's comparison at toy scale, over K seeds. Per seed,
// one SFT reference and one labelled data set (the demo's pipeline, steps 1-3, cached in
// <out>/seed-S), then steps 4-5 for every configuration:
//   main grid    β × {DPO, ε-DPO ε ∈ {0.005, 0.01, 0.02}, TR-DPO hard and soft, β-DPO}
//   --precisions fp32,bf16   adds ε-DPO with the authors' bf16 step decision (--criterion-precision)
//   --noise 0,0.2,0.4        adds DPO and ε-DPO (ε = 0.01) with that fraction of pairs flipped
//   --baselines all          the paper's comparison set (docs/methods.md), each over its own grid:
//                            IPO τ, CPO/SLiC-HF/R-DPO/KTO β and ORPO λ over --betas, SimPO β ∈
//                            {1, 2, 2.5} with its paper's γ/β = 0.5, RRHF (no β) once; `none`, or a
//                            comma list of method names, for fewer
// The last table takes each method's best configuration by mean win rate (Table 1's protocol:
// the best of a grid per method) and pairs it with DPO's best β at the same seed.
// Each run's result is cached in its folder (result.json): a rerun with more seeds or options only
// trains what is missing, and --report-only just aggregates. Outputs: table.md (means, 95% CIs,
// paired differences against DPO at the same seed, β and noise), results.json, pareto*.svg.
//   node dist/bench/paper/sweep.js [--seeds 5] [--first-seed 1] [--out bench/out/paper] [--quick]
//     [--betas 0.1,0.5,1] [--precisions fp32] [--noise 0] [--noise-betas …] [--baselines all] [--report-only]
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { demoConfig } from '../../lib/demo/config'
import { METHODS } from '../../lib/train/methods'
import { type Method, type MethodResult, prepare, type RunSpec, trainAndEvaluate } from '../../lib/demo/pipeline'
import { winRateKlSpec, type WinRateKlRow, writeSvg } from '../../lib/eval/plots'
import { bootstrapMeanCi, meanCi } from './stats'

const EPSILONS = [0.005, 0.01, 0.02]
/** The comparison set, in Table 1's order; the β-like value each is swept over comes from `configurations`. */
const BASELINES = ['rrhf', 'slic-hf', 'ipo', 'cpo', 'kto', 'orpo', 'r-dpo', 'simpo'] as const
type Baseline = (typeof BASELINES)[number]
const SIMPO_BETAS = [1, 2, 2.5]

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}
const numbers = (name: string, fallback: number[]): number[] => {
  const v = flag(name)
  if (v === undefined) return fallback
  const xs = v.split(',').map(Number)
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`--${name}: expected comma-separated numbers, got '${v}'`)
  return xs
}

/** One configuration (the same at every seed). */
interface Config {
  method: Method
  beta: number
  epsilon: number
  trDpoMode: 'hard' | 'soft'
  criterionPrecision: 'fp32' | 'bf16'
  labelNoise: number
  /** Method options besides β and ε (SimPO's γ). */
  options?: Record<string, number>
}

const hasBeta = (c: Config) => Object.hasOwn(METHODS[c.method].options, 'beta')
const isBaseline = (c: Config) => (BASELINES as readonly string[]).includes(c.method)

/** What a run leaves in result.json. */
interface RunResult extends MethodResult {
  seconds: number
  /** Mean over training steps of the fractions of pairs with s = +1 and s = −1. */
  plusFraction: number
  minusFraction: number
}

const id = (c: Config) =>
  [
    c.method === 'tr-dpo' ? `tr-dpo-${c.trDpoMode}` : c.method,
    hasBeta(c) ? `beta${c.beta}` : '',
    c.method === 'epsilon-dpo' ? `eps${c.epsilon}` : '',
    c.criterionPrecision === 'bf16' ? 'bf16' : '',
    c.labelNoise > 0 ? `noise${c.labelNoise}` : '',
  ]
    .filter(Boolean)
    .join('-')

/** The series name in tables and plots (lib/eval/method-colors.ts keys its colour on it). */
const series = (c: Config) =>
  isBaseline(c)
    ? METHODS[c.method].title
    : c.method === 'dpo'
      ? 'DPO'
      : c.method === 'beta-dpo'
        ? 'β-DPO'
        : c.method === 'tr-dpo'
          ? `TR-DPO ${c.trDpoMode}`
          : `ε-DPO (ε = ${c.epsilon}${c.criterionPrecision === 'bf16' ? ', bf16' : ''})`

function configurations(betas: number[], precisions: string[], noise: number[], noiseBetas: number[], baselines: readonly Baseline[]): Config[] {
  const base = { epsilon: 0, trDpoMode: 'soft' as const, criterionPrecision: 'fp32' as const, labelNoise: 0 }
  const out: Config[] = []
  for (const beta of betas) {
    out.push({ ...base, method: 'dpo', beta })
    for (const epsilon of EPSILONS) out.push({ ...base, method: 'epsilon-dpo', beta, epsilon })
    if (precisions.includes('bf16')) for (const epsilon of EPSILONS) out.push({ ...base, method: 'epsilon-dpo', beta, epsilon, criterionPrecision: 'bf16' })
    out.push(
      { ...base, method: 'tr-dpo', beta, trDpoMode: 'hard' },
      { ...base, method: 'tr-dpo', beta, trDpoMode: 'soft' },
      { ...base, method: 'beta-dpo', beta },
    )
  }
  for (const p of noise.filter((x) => x > 0))
    for (const beta of noiseBetas)
      out.push({ ...base, method: 'dpo', beta, labelNoise: p }, { ...base, method: 'epsilon-dpo', beta, epsilon: 0.01, labelNoise: p })
  for (const method of baselines) {
    if (method === 'rrhf') out.push({ ...base, method, beta: 0 })
    else if (method === 'simpo') for (const beta of SIMPO_BETAS) out.push({ ...base, method, beta, options: { simpoGamma: beta / 2 } })
    else for (const beta of betas) out.push({ ...base, method, beta })
  }
  return out
}

function baselineList(v: string | undefined): Baseline[] {
  if (v === undefined || v === 'all') return [...BASELINES]
  if (v === 'none') return []
  const names = v.split(',')
  for (const n of names)
    if (!(BASELINES as readonly string[]).includes(n)) throw new Error(`--baselines: all, none or a comma list of ${BASELINES.join(', ')}; got '${n}'`)
  return names as Baseline[]
}

async function main(): Promise<void> {
  const out = flag('out') ?? path.join('bench', 'out', 'paper')
  const seeds = Number(flag('seeds') ?? 5)
  const firstSeed = Number(flag('first-seed') ?? 1)
  if (!Number.isInteger(seeds) || seeds < 1) throw new Error(`--seeds: expected a positive integer, got ${flag('seeds')}`)
  // The default size (3 β × 7 methods × 5 seeds) fits 15 minutes on 2 cores; the study adds --betas 0.1,0.25,0.5,1.
  const betas = numbers('betas', [0.1, 0.5, 1])
  const precisions = (flag('precisions') ?? 'fp32').split(',')
  for (const p of precisions) if (p !== 'fp32' && p !== 'bf16') throw new Error(`--precisions: fp32 and/or bf16, got '${p}'`)
  const noise = numbers('noise', [0])
  const noiseBetas = numbers('noise-betas', betas)
  const quick = process.argv.includes('--quick')
  const configs = configurations(betas, precisions, noise, noiseBetas, baselineList(flag('baselines')))
  const started = performance.now()
  console.log(
    `${configs.length} configurations × ${seeds} seeds; ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  )

  const results = new Map<string, Map<number, RunResult>>()
  for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
    const c = demoConfig({ out: path.join(out, `seed-${seed}`), quick, seed })
    const done = (cfg: Config) => path.join(c.out, id(cfg), 'result.json')
    const missing = configs.filter((cfg) => !fs.existsSync(done(cfg)))
    if (missing.length > 0 && !process.argv.includes('--report-only')) {
      const p = await prepare(c, { log: (l) => console.log(`[seed ${seed}] ${l}`) }, undefined, true)
      for (const cfg of missing) {
        const t0 = performance.now()
        const run: RunSpec = { ...cfg, out: path.join(c.out, id(cfg)) }
        const { result, curve } = await trainAndEvaluate(p, c, run)
        const meanOf = (k: string) => curve.reduce((a, m) => a + (m[k] ?? 0), 0) / Math.max(1, curve.length)
        const r: RunResult = {
          ...result,
          seconds: (performance.now() - t0) / 1000,
          plusFraction: meanOf('kl/p_epsilon_steps'),
          minusFraction: meanOf('kl/n_epsilon_steps'),
        }
        fs.writeFileSync(done(cfg), JSON.stringify(r, null, 2) + '\n')
        console.log(
          `[seed ${seed}] ${id(cfg)}: win ${(100 * r.gold.winRate).toFixed(1)}%, KL ${r.gold.kl.toFixed(3)}, final β ${r.finalBeta?.toPrecision(4)}, s=+1 ${(100 * r.plusFraction).toFixed(0)}% (${r.seconds.toFixed(1)} s; load ${os.loadavg()[0]!.toFixed(2)})`,
        )
      }
    }
    for (const cfg of configs)
      if (fs.existsSync(done(cfg))) {
        const key = id(cfg)
        if (!results.has(key)) results.set(key, new Map())
        results.get(key)!.set(seed, JSON.parse(fs.readFileSync(done(cfg), 'utf8')) as RunResult)
      }
  }
  const seconds = (performance.now() - started) / 1000
  report(out, configs, results, { seeds, firstSeed, quick, seconds, command: process.argv.slice(2).join(' ') })
}

// Llama-3-Instruct (8B), AlpacaEval 2 LC win rate %: the paper's Table 1 (the comparison set, DPO,
// ε-DPO) and Table 2 (β-DPO, TR-DPOτ = hard, TR-DPOα = soft); quoted for the ranking's comparison.
const PAPER_LC: Record<string, number> = {
  'ε-DPO': 46.4,
  SimPO: 44.7,
  'TR-DPO soft': 43.5,
  'β-DPO': 43.4,
  'TR-DPO hard': 42.8,
  'R-DPO': 41.1,
  DPO: 40.3,
  IPO: 35.6,
  KTO: 33.1,
  RRHF: 31.3,
  CPO: 28.9,
  ORPO: 28.5,
  'SLiC-HF': 26.9,
}

/** A method as Table 1 counts it: every ε and β of ε-DPO is one method; bf16 and noisy runs are not in it. */
const family = (c: Config): string | undefined =>
  c.labelNoise > 0 || c.criterionPrecision === 'bf16'
    ? undefined
    : c.method === 'epsilon-dpo'
      ? 'ε-DPO'
      : c.method === 'tr-dpo'
        ? `TR-DPO ${c.trDpoMode}`
        : series(c)

const pct = (x: number) => `${(100 * x).toFixed(1)}`
const ci = (m: { mean: number; lo: number; hi: number }, f: (x: number) => string) => `${f(m.mean)} [${f(m.lo)}, ${f(m.hi)}]`

interface BestRow {
  config: Config
  n: number
  winRate: { mean: number; lo: number; hi: number }
  kl: { mean: number; lo: number; hi: number }
  runs: Map<number, RunResult>
}
type Paired = (
  runs: Map<number, RunResult>,
  dpo: Map<number, RunResult> | undefined,
) => { dWin?: { mean: number; lo: number; hi: number }; wins?: number; pairedN: number }

/** Each method's best configuration by mean win rate, ranked, each paired with DPO's best at the same seed, beside the paper's ranking. */
function bestTable(rows: readonly BestRow[], dpoBest: Map<number, RunResult> | undefined, pairedWith: Paired): string[] {
  const best = new Map<string, BestRow>()
  for (const r of rows) {
    const f = family(r.config)
    if (f !== undefined && (!best.has(f) || r.winRate.mean > best.get(f)!.winRate.mean)) best.set(f, r)
  }
  if (best.size < 2) return []
  const ranked = [...best.entries()].sort((a, b) => b[1].winRate.mean - a[1].winRate.mean)
  const paperRank = Object.keys(PAPER_LC).filter((m) => best.has(m))
  const setting = (c: Config) =>
    [
      hasBeta(c) ? `β ${c.beta}` : '',
      c.method === 'epsilon-dpo' ? `ε ${c.epsilon}` : '',
      c.options?.simpoGamma !== undefined ? `γ ${c.options.simpoGamma}` : '',
    ]
      .filter(Boolean)
      .join(', ') || '–'
  const header = [
    'rank',
    'method',
    'best setting',
    'seeds',
    'win rate % [95% CI]',
    'KL [95% CI]',
    'Δwin vs best DPO, pts [bootstrap 95% CI]',
    'seeds > DPO',
    'paper LC % (rank)',
  ]
  const lines = ranked.map(([f, r], i) => {
    const p = f === 'DPO' ? undefined : pairedWith(r.runs, dpoBest)
    const paper = PAPER_LC[f]
    return [
      String(i + 1),
      f,
      setting(r.config),
      String(r.n),
      ci(r.winRate, pct),
      ci(r.kl, (x) => x.toFixed(2)),
      p?.dWin ? ci(p.dWin, (x) => (100 * x).toFixed(1)) : '–',
      p?.wins === undefined ? '–' : `${p.wins}/${p.pairedN}`,
      paper === undefined ? '–' : `${paper} (${paperRank.indexOf(f) + 1})`,
    ]
  })
  return [
    "### Each method at its best setting (Table 1's protocol), ranked by win rate",
    '',
    `| ${header.join(' | ')} |`,
    `|${header.map((_, j) => (j <= 1 ? '---' : '---:')).join('|')}|`,
    ...lines.map((l) => `| ${l.join(' | ')} |`),
    '',
    "The paper's column is its Llama-3-Instruct AlpacaEval 2 LC win rate (Tables 1 and 2), ranked among the methods this table has.",
    '',
  ]
}

function report(
  out: string,
  configs: Config[],
  results: Map<string, Map<number, RunResult>>,
  info: { seeds: number; firstSeed: number; quick: boolean; seconds: number; command: string },
): void {
  const dpoAt = (beta: number, labelNoise: number) =>
    results.get(id({ method: 'dpo', beta, epsilon: 0, trDpoMode: 'soft', criterionPrecision: 'fp32', labelNoise }))
  const meanWin = (runs: Map<number, RunResult> | undefined) =>
    runs && runs.size > 0 ? [...runs.values()].reduce((a, r) => a + r.gold.winRate, 0) / runs.size : -Infinity
  // DPO's best β on clean labels by mean win rate: what the baselines (whose β means something else) are paired with.
  const bestDpoBeta = configs
    .filter((c) => c.method === 'dpo' && c.labelNoise === 0)
    .map((c) => c.beta)
    .reduce<number | undefined>((best, b) => (best === undefined || meanWin(dpoAt(b, 0)) > meanWin(dpoAt(best, 0)) ? b : best), undefined)
  const against = (c: Config) => (isBaseline(c) ? (bestDpoBeta === undefined ? undefined : dpoAt(bestDpoBeta, 0)) : dpoAt(c.beta, c.labelNoise))
  /** Paired differences against `dpo` at the same seed (same reference, data and data order). */
  const pairedWith = (runs: Map<number, RunResult>, dpo: Map<number, RunResult> | undefined) => {
    const seeds = dpo ? [...runs.keys()].filter((s) => dpo.has(s)).sort((a, b) => a - b) : []
    const diff = (f: (r: RunResult) => number) =>
      seeds.length > 0
        ? bootstrapMeanCi(
            seeds.map((s) => f(runs.get(s)!) - f(dpo!.get(s)!)),
            10_000,
            12345,
          )
        : undefined
    return {
      dWin: diff((r) => r.gold.winRate),
      dKl: diff((r) => r.gold.kl),
      wins: seeds.length > 0 ? seeds.filter((s) => runs.get(s)!.gold.winRate > dpo!.get(s)!.gold.winRate).length : undefined,
      pairedN: seeds.length,
    }
  }
  const rows = configs.flatMap((c) => {
    const runs = results.get(id(c))
    if (!runs || runs.size === 0) return []
    const seedsDone = [...runs.keys()].sort((a, b) => a - b)
    const all = seedsDone.map((s) => runs.get(s)!)
    // The DPO family against DPO at the same β and noise; the comparison set against DPO's best β.
    const paired = c.method === 'dpo' && !isBaseline(c) ? undefined : pairedWith(runs, against(c))
    return [
      {
        config: c,
        series: series(c),
        n: all.length,
        winRate: meanCi(all.map((r) => r.gold.winRate)),
        kl: meanCi(all.map((r) => r.gold.kl)),
        reward: meanCi(all.map((r) => r.gold.meanReward)),
        finalBeta: all.reduce((a, r) => a + (r.finalBeta ?? NaN), 0) / all.length,
        plus: all.reduce((a, r) => a + r.plusFraction, 0) / all.length,
        minus: all.reduce((a, r) => a + r.minusFraction, 0) / all.length,
        dWin: paired?.dWin,
        dKl: paired?.dKl,
        wins: paired?.wins,
        pairedN: paired?.pairedN,
        runs,
        seconds: all.reduce((a, r) => a + r.seconds, 0) / all.length,
      },
    ]
  })
  const header = [
    'method',
    'β (τ, λ)',
    'noise',
    'seeds',
    'win rate % [95% CI]',
    'KL [95% CI]',
    'gold reward [95% CI]',
    'Δwin vs DPO, pts [bootstrap 95% CI]',
    'seeds > DPO',
    'ΔKL vs DPO',
    'final β',
    's=+1 / s=−1',
  ]
  const lines = rows.map((r) => [
    r.series,
    hasBeta(r.config) ? String(r.config.beta) : '–',
    String(r.config.labelNoise),
    String(r.n),
    ci(r.winRate, pct),
    ci(r.kl, (x) => x.toFixed(2)),
    ci(r.reward, (x) => x.toFixed(3)),
    r.dWin ? ci(r.dWin, (x) => (100 * x).toFixed(1)) : '–',
    r.wins === undefined ? '–' : `${r.wins}/${r.pairedN}`,
    r.dKl ? ci(r.dKl, (x) => x.toFixed(2)) : '–',
    Number.isFinite(r.finalBeta) ? r.finalBeta.toPrecision(3) : '–',
    r.config.method === 'epsilon-dpo' ? `${pct(r.plus)}% / ${pct(r.minus)}%` : '–',
  ])
  const table = (title: string, keep: (c: Config) => boolean) => {
    const picked = lines.filter((_, i) => keep(rows[i]!.config))
    if (picked.length === 0) return []
    return [
      `### ${title}`,
      '',
      `| ${header.join(' | ')} |`,
      `|${header.map((_, j) => (j === 0 ? '---' : '---:')).join('|')}|`,
      ...picked.map((l) => `| ${l.join(' | ')} |`),
      '',
    ]
  }
  const md = [
    `Command: \`npm run bench:paper -- ${info.command}\` (${info.quick ? 'quick' : 'full'} preset, seeds ${info.firstSeed}–${info.firstSeed + info.seeds - 1}); this invocation took ${info.seconds.toFixed(0)} s on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load at the end ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; ${new Date().toISOString()}.`,
    '',
    ...table('Every method over β (fp32 step decision, clean labels)', (c) => c.labelNoise === 0 && c.criterionPrecision === 'fp32' && !isBaseline(c)),
    ...table(`The comparison set, each over its grid (Δ against DPO at its best β, ${bestDpoBeta})`, isBaseline),
    ...bestTable(rows, bestDpoBeta === undefined ? undefined : dpoAt(bestDpoBeta, 0), pairedWith),
    ...table("ε-DPO with the authors' bf16 step decision (clean labels)", (c) => c.labelNoise === 0 && c.criterionPrecision === 'bf16'),
    ...table(
      'Label noise: DPO and ε-DPO (ε = 0.01)',
      (c) =>
        rows.some((r) => r.config.labelNoise > 0) &&
        (c.method === 'dpo' || (c.method === 'epsilon-dpo' && c.epsilon === 0.01 && c.criterionPrecision === 'fp32')) &&
        configs.some((q) => q.labelNoise > 0 && q.beta === c.beta),
    ),
  ].join('\n')
  fs.mkdirSync(out, { recursive: true })
  fs.writeFileSync(path.join(out, 'table.md'), md)
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(rows, null, 2) + '\n')
  const point = (r: (typeof rows)[number], label: string): WinRateKlRow => ({
    method: r.series,
    kl: r.kl.mean,
    winRate: r.winRate.mean,
    klRange: [r.kl.lo, r.kl.hi],
    winRateRange: [r.winRate.lo, r.winRate.hi],
    label,
  })
  const clean = rows.filter((r) => r.config.labelNoise === 0)
  const plots: [string, string, WinRateKlRow[]][] = [
    [
      'pareto.svg',
      'Win rate against KL over β, mean and 95% CI over seeds',
      clean.filter((r) => r.config.criterionPrecision === 'fp32' && !isBaseline(r.config)).map((r) => point(r, `β ${r.config.beta}`)),
    ],
    [
      'pareto-baselines.svg',
      'The comparison set over its grids, with DPO and ε-DPO (ε = 0.01)',
      clean
        .filter(
          (r) =>
            r.config.criterionPrecision === 'fp32' &&
            (isBaseline(r.config) || r.config.method === 'dpo' || (r.config.method === 'epsilon-dpo' && r.config.epsilon === 0.01)),
        )
        .map((r) => point(r, hasBeta(r.config) ? `β ${r.config.beta}` : '')),
    ],
    [
      'pareto-bf16.svg',
      'ε-DPO step decision in fp32 against the authors\u2019 bf16',
      clean.filter((r) => r.config.method === 'dpo' || r.config.method === 'epsilon-dpo').map((r) => point(r, `β ${r.config.beta}`)),
    ],
    [
      'pareto-noise.svg',
      'DPO and ε-DPO (ε = 0.01) under label noise p',
      rows
        .filter(
          (r) =>
            (r.config.method === 'dpo' || (r.config.method === 'epsilon-dpo' && r.config.epsilon === 0.01 && r.config.criterionPrecision === 'fp32')) &&
            rows.some((q) => q.config.labelNoise > 0 && q.config.beta === r.config.beta),
        )
        .map((r) => ({ ...point(r, `p ${r.config.labelNoise}`), method: `${r.series} β ${r.config.beta}` })),
    ],
  ]
  for (const [file, title, points] of plots) if (points.length > 0) writeSvg(path.join(out, file), winRateKlSpec(title, points))
  console.log('\n' + md)
  console.log(`${path.join(out, 'table.md')}, ${plots.map(([f]) => path.join(out, f)).join(', ')}`)
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
