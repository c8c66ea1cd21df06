// `npm run bench:paper`: the paper's sweep at toy scale. One SFT reference and one labelled data
// set (the demo's full preset, steps 1-3), then steps 4-5 for DPO, TR-DPO and ε-DPO over four β,
// and ε-DPO over ε ∈ {0.005, 0.01, 0.02}: a Table-3-like results table (table.md, results.json)
// and the Pareto plot of gold win rate against KL (pareto.svg, as the paper's Figure 4(b)).
//   node dist/bench/paper/sweep.js [--out bench/out/paper] [--quick] [--seed 42]
import * as fs from 'node:fs'
import * as path from 'node:path'

import { demoConfig } from '../../lib/demo/config'
import { type Method, type MethodResult, prepare, referenceRow, trainAndEvaluate } from '../../lib/demo/pipeline'
import { formatTable } from '../../lib/demo/report'
import { winRateKlSpec, writeSvg } from '../../lib/eval/plots'

const BETAS = [0.1, 0.25, 0.5, 1.0]
const EPSILONS = [0.005, 0.01, 0.02]

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}

interface Row {
  method: Method | 'reference'
  beta: number | undefined
  epsilon: number | undefined
  r: MethodResult
}

const NAME: Record<string, string> = { dpo: 'DPO', 'tr-dpo': 'TR-DPO', 'epsilon-dpo': 'ε-DPO', reference: 'reference (SFT)' }
const series = (row: Row) => (row.method === 'epsilon-dpo' ? `ε-DPO (ε = ${row.epsilon})` : NAME[row.method]!)

async function main(): Promise<void> {
  const out = flag('out') ?? path.join('bench', 'out', 'paper')
  const c = demoConfig({ out, quick: process.argv.includes('--quick'), seed: Number(flag('seed') ?? 42) })
  const started = performance.now()
  const p = await prepare(c, { log: (l) => console.log(l) })
  const runs: { method: Method; beta: number; epsilon: number }[] = []
  for (const beta of BETAS) {
    runs.push({ method: 'dpo', beta, epsilon: 0 }, { method: 'tr-dpo', beta, epsilon: 0 })
    for (const epsilon of EPSILONS) runs.push({ method: 'epsilon-dpo', beta, epsilon })
  }
  const rows: Row[] = [{ method: 'reference', beta: undefined, epsilon: undefined, r: await referenceRow(p, c) }]
  for (const [i, run] of runs.entries()) {
    const t0 = performance.now()
    const { result } = await trainAndEvaluate(p, c, { ...run, out: path.join(out, `${run.method}-beta${run.beta}-eps${run.epsilon}`) })
    rows.push({ ...run, r: result })
    console.log(`[${i + 1}/${runs.length}] ${NAME[run.method]} β=${run.beta}${run.method === 'epsilon-dpo' ? ` ε=${run.epsilon}` : ''}: win ${(100 * result.gold.winRate).toFixed(1)}%, reward ${result.gold.meanReward.toFixed(3)}, KL ${result.gold.kl.toFixed(3)}, final β ${result.finalBeta?.toPrecision(4)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`)
  }
  const table = [
    ['method', 'β', 'ε', 'win rate vs ref', 'mean gold reward', 'KL(π‖π_ref)', 'held-out pref. acc.', 'final β'],
    ...rows.map((row) => [
      NAME[row.method]!,
      row.beta === undefined ? '–' : String(row.beta),
      row.method === 'epsilon-dpo' ? String(row.epsilon) : '–',
      `${(100 * row.r.gold.winRate).toFixed(1)}%`,
      row.r.gold.meanReward.toFixed(3),
      row.r.gold.kl.toFixed(3),
      row.r.preferenceAccuracy === undefined ? '–' : `${(100 * row.r.preferenceAccuracy).toFixed(1)}%`,
      row.r.finalBeta === undefined ? '–' : row.r.finalBeta.toPrecision(4),
    ]),
  ]
  const md = [`| ${table[0]!.join(' | ')} |`, `|${table[0]!.map((_, j) => (j === 0 ? '---' : '---:')).join('|')}|`, ...table.slice(1).map((r) => `| ${r.join(' | ')} |`)].join('\n')
  fs.writeFileSync(path.join(out, 'table.md'), md + '\n')
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify({ config: c, data: p.data, rows: rows.map((row) => ({ ...row.r, beta: row.beta, epsilon: row.epsilon })) }, null, 2) + '\n')
  const points = rows.filter((row) => row.method !== 'reference').map((row) => ({ method: series(row), kl: row.r.gold.kl, winRate: row.r.gold.winRate, label: `β ${row.beta}` }))
  await writeSvg(path.join(out, 'pareto.svg'), winRateKlSpec('Gold win rate against KL(π‖π_ref) over β (toy scale)', points))
  console.log('\n' + formatTable(table))
  console.log(`\n${path.join(out, 'table.md')}\n${path.join(out, 'pareto.svg')}\n${path.join(out, 'results.json')}\ntime ${((performance.now() - started) / 1000).toFixed(0)} s`)
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
