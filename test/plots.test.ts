// The SVG plots (lib/eval/plots.ts, lib/eval/svg.ts): well-formed documents, lines where the data
// puts them, the moving average, nice ticks, escaping, and no charting library in the install.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { curvesSpec, movingAverage, renderSvg, winRateKlSpec, writeSvg } from '../lib/eval/plots'
import { niceTicks, tickFormat } from '../lib/eval/svg'
import { tempDir } from './helpers/data-fixtures'

// Every opened element is closed, in order (the SVG is XML that a browser will accept).
function balanced(svg: string): boolean {
  const stack: string[] = []
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue
    if (!m[1]) stack.push(m[2]!)
    else if (stack.pop() !== m[2]) return false
  }
  return stack.length === 0
}

const paths = (svg: string) =>
  [...svg.matchAll(/<path d="([^"]+)" fill="none" stroke="(#[0-9a-f]{6})"/g)].map((m) => ({
    d: m[1]!,
    color: m[2]!,
    points: [...m[1]!.matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g)].map((p) => [Number(p[1]), Number(p[2])]),
  }))

t.test('moving average: centred, 9 wide, shorter at the ends', async (t) => {
  t.same(movingAverage([1, 2, 3, 4, 5], 1), [1.5, 2, 3, 4, 4.5])
  const xs = Array.from({ length: 20 }, (_, i) => i * i)
  const m = movingAverage(xs)
  t.equal(m[10], xs.slice(6, 15).reduce((a, b) => a + b) / 9)
  t.equal(m[0], xs.slice(0, 5).reduce((a, b) => a + b) / 5)
  t.same(movingAverage([]), [])
})

t.test('nice ticks and their labels', async (t) => {
  t.match(niceTicks(0, 1), { lo: 0, hi: 1, step: 0.2, values: [0, 0.2, 0.4, 0.6, 0.8, 1] })
  t.match(niceTicks(0.4712, 0.5, 4), { lo: 0.47, hi: 0.5, step: 0.01, values: [0.47, 0.48, 0.49, 0.5] })
  t.match(niceTicks(1, 57, 6), { lo: 0, hi: 60, step: 10 })
  const flat = niceTicks(0.5, 0.5)
  t.ok(flat.lo < 0.5 && flat.hi > 0.5, 'a constant series gets a range around it')
  t.throws(() => niceTicks(0, NaN), RangeError)
  t.equal(tickFormat(0.2, true)(0.4), '40%')
  t.equal(tickFormat(0.01)(0.47), '0.47')
  t.equal(tickFormat(10)(60), '60')
})

t.test("training curves: one panel per metric, one line per run, in the data's place", async (t) => {
  const rows = ['DPO', 'ε-DPO'].flatMap((run, r) =>
    Array.from({ length: 30 }, (_, i) => [
      { run, step: i + 1, metric: 'loss', value: 0.7 - 0.01 * i },
      { run, step: i + 1, metric: 'β', value: 0.5 - 0.001 * i * r },
    ]).flat(),
  )
  const svg = renderSvg(curvesSpec('Curves <&>', rows))
  t.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\s*$/)
  t.ok(balanced(svg), 'every element is closed')
  t.match(svg, /Curves &lt;&amp;&gt;/, 'text is escaped')
  t.match(svg, /optimizer step[\s\S]*ε-DPO/, 'x axis title, then the legend')
  t.match(svg, />loss</)
  t.match(svg, />β</)
  const lines = paths(svg)
  t.equal(lines.length, 4, '2 runs × 2 metrics')
  t.not(lines[0]!.color, lines[1]!.color, 'runs have their own colours')
  for (const l of lines) t.equal(l.points.length, 30)
  // Loss falls: its line goes down the page (SVG y grows downwards). DPO's β is flat.
  const loss = lines[0]!.points
  const [first, last] = [loss[0]!, loss.at(-1)!]
  t.ok(last[1]! > first[1]!, 'falling loss is drawn falling')
  t.ok(last[0]! > first[0]!, 'steps go left to right')
  const betaDpo = lines[2]!.points
  t.ok(
    betaDpo.every((p) => p[1] === betaDpo[0]![1]),
    'a constant β is a horizontal line',
  )
  // All points sit inside the drawing.
  const [w, h] = [/width="([\d.]+)"/.exec(svg)![1], /height="([\d.]+)"/.exec(svg)![1]].map(Number)
  for (const l of lines)
    t.ok(
      l.points.every(([x, y]) => x! >= 0 && x! <= w! && y! >= 0 && y! <= h!),
      'inside the canvas',
    )
})

t.test('win rate against KL: a point per row, a line per method, labels, percent axis', async (t) => {
  const rows = [
    { method: 'reference (SFT)', kl: 0, winRate: 0.5, label: '50.0%' },
    { method: 'ε-DPO', kl: 4, winRate: 0.8, label: 'β 0.1' },
    { method: 'ε-DPO', kl: 2, winRate: 0.7, label: 'β 0.5' },
    { method: 'DPO', kl: Number.NaN, winRate: 0.6 },
  ]
  const file = writeSvg(path.join(tempDir(t), 'pareto.svg'), winRateKlSpec('Pareto', rows))
  const svg = fs.readFileSync(file, 'utf8')
  t.ok(balanced(svg))
  t.equal([...svg.matchAll(/<circle cx/g)].length - 2, 3, 'three finite points (plus two legend swatches)')
  t.notMatch(svg, /NaN/, 'a non-finite row is left out, not drawn at NaN')
  t.match(svg, />β 0\.1</)
  t.match(svg, />80%</)
  t.match(svg, /KL\(π‖π_ref\)/)
  // The ε-DPO line is drawn in order of KL, so it rises from (2, 70%) to (4, 80%).
  const line = paths(svg)[1]!.points
  t.ok(line[0]![0]! < line[1]![0]! && line[0]![1]! > line[1]![1]!)
})

t.test('empty data still gives a valid SVG', async (t) => {
  t.ok(balanced(renderSvg(curvesSpec('none', []))))
  t.match(renderSvg(winRateKlSpec('none', [])), /no data/)
})

t.test('no charting library among the production dependencies', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  for (const heavy of ['vega', 'vega-lite', 'cmake-js', 'node-gyp']) t.notOk(heavy in pkg.dependencies, `${heavy} is not installed for users`)
})

t.test('a method keeps its colour in every chart, whatever the order of the series', async (t) => {
  const curve = (run: string) => [1, 2].map((step) => ({ run, step, metric: 'loss', value: 1 / step }))
  const curves = paths(renderSvg(curvesSpec('c', [...curve('ε-DPO'), ...curve('DPO')])))
  const pareto = paths(
    renderSvg(
      winRateKlSpec('p', [
        { method: 'TR-DPO', kl: 1, winRate: 0.5 },
        { method: 'DPO', kl: 2, winRate: 0.6 },
        { method: 'ε-DPO (ε = 0.01)', kl: 3, winRate: 0.7, klRange: [2.5, 3.5], winRateRange: [0.65, 0.75] },
      ]),
    ),
  )
  t.equal(curves[1]!.color, pareto[1]!.color, 'DPO')
  t.equal(curves[0]!.color, pareto[2]!.color, 'ε-DPO (ε = 0.01 is the demo default)')
  t.not(pareto[0]!.color, pareto[1]!.color)
  const bars = renderSvg(winRateKlSpec('p', [{ method: 'β-DPO', kl: 3, winRate: 0.7, klRange: [2.5, 3.5], winRateRange: [0.65, 0.75] }]))
  t.equal(
    [...bars.matchAll(/<line x1="[\d.]+" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke="#[0-9a-f]{6}" stroke-width="1"\/>/g)].length,
    2,
    'one horizontal and one vertical error bar',
  )
  t.match(renderSvg(curvesSpec('c', curve('ε-DPO (ε = 0.01, bf16)'))), /stroke-dasharray/, 'the bf16 criterion is dashed')
})
