// `edpo demo --quick` end to end (the pipeline npm test can afford): its files, finite metrics,
// DPO and ε-DPO beating the reference on the gold reward, β per spec §6, and `edpo eval --gold`
// on the demo's own checkpoints through the command line.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { runDemo } from '../lib/demo/pipeline'
import { readMetrics } from '../lib/train/metrics-log'
import { tempDir } from './helpers/data-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
const edpo = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })

t.test('edpo demo --quick', async (t) => {
  const out = path.join(tempDir(t), 'demo')
  const phases = new Set<string>()
  const r = await runDemo({ quick: true, out }, { progress: (phase) => phases.add(phase) })
  t.same([...phases], ['sft', 'label', 'dpo', 'eval', 'epsilon-dpo', 'tr-dpo'], 'progress reported for every phase')

  // Files: report, results, two SVG plots (lib/eval/svg.ts), each method's run folder and samples.
  for (const f of [r.files.report, r.files.results, ...r.files.plots]) t.ok(fs.statSync(f).size > 500, `${path.basename(f)} written`)
  for (const f of r.files.plots)
    t.match(fs.readFileSync(f, 'utf8'), /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\s*$/, `${path.basename(f)} is an SVG`)
  t.match(fs.readFileSync(r.files.plots[0]!, 'utf8'), /optimizer step[\s\S]*ε-DPO/, 'training curves name their axis and methods')
  const report = fs.readFileSync(r.files.report, 'utf8')
  t.match(report, /\| method \| win rate vs ref \| mean gold reward \| KL\(π‖π_ref\) \|/)
  t.match(report, /\| ε-DPO \| [\d.]+% \|/)
  t.match(report, /## ε-DPO: the β trajectory/)
  t.same(JSON.parse(fs.readFileSync(r.files.results, 'utf8')).results.length, 4)
  for (const m of ['dpo', 'epsilon-dpo', 'tr-dpo']) t.ok(fs.existsSync(path.join(out, m, 'samples.jsonl')), `${m} samples kept`)
  t.ok(r.data.trainPairs > 500, `${r.data.trainPairs} labelled training pairs`)

  // Metrics are finite.
  for (const m of r.results) {
    for (const [k, v] of Object.entries(m.gold)) t.ok(Number.isFinite(v), `${m.method} ${k} = ${v}`)
    if (m.method !== 'reference') t.ok(m.preferenceAccuracy! >= 0 && m.preferenceAccuracy! <= 1)
  }
  for (const [method, lines] of Object.entries(r.curves))
    t.ok(
      lines.every((l) => Number.isFinite(l.loss) && Number.isFinite(l['kl/beta'])),
      `${method} curves finite`,
    )

  // The reference against itself: zero KL; the methods beat its samples on the gold reward.
  const by = Object.fromEntries(r.results.map((m) => [m.method, m]))
  t.equal(by.reference!.gold.kl, 0)
  for (const m of ['dpo', 'epsilon-dpo'] as const) {
    t.ok(by[m]!.gold.winRate > 0.5, `${m} win rate ${by[m]!.gold.winRate}`)
    t.ok(by[m]!.gold.meanReward > by.reference!.gold.meanReward, `${m} reward ${by[m]!.gold.meanReward} vs reference ${by.reference!.gold.meanReward}`)
    t.ok(by[m]!.gold.kl > 0, `${m} moved away from the reference`)
  }

  // β (spec §6): ε-DPO's β_{k+1} = β_k/(1+ε·s̄_k) from metrics.jsonl, and the final β after the last step; DPO's is constant.
  const eps = readMetrics(path.join(out, 'epsilon-dpo')).filter((l) => 'loss' in l)
  t.equal(eps[0]!['kl/beta'], 0.5)
  let ok = true
  for (let k = 1; k < eps.length; k++) ok &&= Math.abs(eps[k]!['kl/beta']! - eps[k - 1]!['kl/beta']! / (1 + 0.01 * eps[k - 1]!['kl/avg_steps']!)) < 1e-15
  t.ok(ok, `β follows β/(1+ε·s̄) over ${eps.length} steps`)
  const last = eps[eps.length - 1]!
  t.ok(Math.abs(by['epsilon-dpo']!.finalBeta! - last['kl/beta']! / (1 + 0.01 * last['kl/avg_steps']!)) < 1e-15, 'final β')
  t.ok(
    eps.every((l) => Math.abs(l['kl/avg_steps']! - (l['kl/p_epsilon_steps']! - l['kl/n_epsilon_steps']!)) < 1e-12),
    's̄ = share(+1) − share(−1)',
  )
  t.ok(
    eps.some((l) => l['kl/avg_steps'] !== 0),
    'the perturbation moved β',
  )
  t.ok(
    readMetrics(path.join(out, 'dpo'))
      .filter((l) => 'loss' in l)
      .every((l) => l['kl/beta'] === 0.5 && l['kl/p_epsilon_steps'] === 0),
    'DPO keeps β',
  )

  // `edpo eval --gold` with the shipped judge on the demo's checkpoints gives a win rate like the demo's.
  const dpo = path.join(out, 'dpo', `checkpoint-${by.dpo!.steps}`)
  const cli = edpo([
    'eval',
    '--model',
    dpo,
    '--reference-model',
    by.reference!.runDir,
    '--gold',
    path.join(__dirname, '..', 'lib', 'demo', 'gold-reward.ts'),
    '--prompts',
    path.join(out, 'data', 'prefs-heldout.jsonl'),
    '--max-new-tokens',
    '10',
    '--json',
  ])
  t.equal(cli.status, 0, cli.stderr)
  const gold = JSON.parse(cli.stdout).gold
  t.ok(gold.winRate > 0.5 && gold.kl > 0, `CLI gold win rate ${gold.winRate}, KL ${gold.kl}`)
})

t.test('edpo demo on the command line: progress per phase, the table and the file paths', (t) => {
  const out = path.join(tempDir(t), 'small')
  const r = edpo([
    'demo',
    '--quick',
    '--out',
    out,
    '--sft-steps',
    '20',
    '--train-prompts',
    '64',
    '--eval-prompts',
    '32',
    '--methods',
    'dpo',
    '--methods',
    'epsilon-dpo',
    '--epochs',
    '1',
  ])
  t.equal(r.status, 0, r.stderr)
  for (const phase of ['SFT reference +step 20/20', 'sample \\+ label', 'DPO +step', 'ε-DPO +step \\d+/\\d+ +loss [\\d.]+ +acc [\\d.]+ +β', 'gold evaluation'])
    t.match(r.stdout, new RegExp(phase), phase)
  t.match(r.stdout, /method +win rate vs ref +mean gold reward +KL\(π‖π_ref\)/)
  t.match(r.stdout, /reference \(SFT\) +[\d.]+% +[-\d.]+ +0\.000/)
  t.match(r.stdout, /ε-DPO +[\d.]+% /)
  t.match(r.stdout, new RegExp(`report +${out}/report\\.md`))
  t.match(r.stdout, /training-curves\.svg[\s\S]*win-rate-vs-kl\.svg/)
  t.ok(fs.existsSync(path.join(out, 'win-rate-vs-kl.svg')))
  t.end()
})

t.test('edpo demo --help and bad flags', (t) => {
  const help = edpo(['demo', '--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /--quick +a smaller, faster pipeline/)
  t.match(help.stdout, /--beta <value> .*\(default 0.5\)/)
  const busy = tempDir(t)
  fs.writeFileSync(path.join(busy, 'notes.txt'), 'mine')
  const refused = edpo(['demo', '--quick', '--out', busy])
  t.equal(refused.status, 1)
  t.match(refused.stderr, /--out .*: the folder is not empty and was not made by edpo demo/)
  t.ok(fs.existsSync(path.join(busy, 'notes.txt')), 'nothing was deleted')
  const bad = edpo(['demo', '--methods', 'ppo'])
  t.equal(bad.status, 1)
  t.match(bad.stderr, /--methods: Invalid option: expected one of .*\(got \["ppo"\]\)/)
  t.end()
})
