// Plots as SVG files: Vega-Lite specifications compiled and rendered headless by vega's
// View.toSVG() in Node. vega and vega-lite 6 are ES modules only, so they are loaded with a real
// dynamic import (tsc's commonjs output would otherwise turn import() into require()).
import * as fs from 'node:fs'

export type VegaLiteSpec = Record<string, unknown>

const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>

interface VegaLite {
  compile(spec: VegaLiteSpec): { spec: unknown }
}
interface Vega {
  parse(spec: unknown): unknown
  View: new (runtime: unknown, opts: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void }
}

let loaded: Promise<{ vl: VegaLite; vega: Vega }> | undefined
function libraries(): Promise<{ vl: VegaLite; vega: Vega }> {
  loaded ??= Promise.all([dynamicImport('vega-lite'), dynamicImport('vega')]).then(([vl, vega]) => ({ vl: vl as VegaLite, vega: vega as Vega }))
  return loaded
}

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const { vl, vega } = await libraries()
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

export async function writeSvg(file: string, spec: VegaLiteSpec): Promise<string> {
  fs.writeFileSync(file, await renderSvg(spec))
  return file
}

/** Training curves (moving averages): one panel per metric, one line per run. rows: {run, step, metric, value}. */
export function curvesSpec(title: string, rows: readonly { run: string; step: number; metric: string; value: number }[]): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: rows },
    facet: { row: { field: 'metric', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 420,
      height: 140,
      // Per-step values of small batches are noisy: draw a centred moving average over 9 steps.
      transform: [{ window: [{ op: 'mean', field: 'value', as: 'smoothed' }], frame: [-4, 4], groupby: ['run', 'metric'], sort: [{ field: 'step' }] }],
      mark: { type: 'line', point: false },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
        y: { field: 'smoothed', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'run', type: 'nominal', title: 'method' },
      },
    },
  }
}

/** Win rate against KL(π‖π_ref), one point (or a line through a sweep) per method. */
export function winRateKlSpec(title: string, rows: readonly { method: string; kl: number; winRate: number; label?: string }[]): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 420,
    height: 300,
    data: { values: rows },
    layer: [
      {
        mark: { type: 'line', point: { size: 80, filled: true } },
        encoding: {
          x: { field: 'kl', type: 'quantitative', title: 'KL(π‖π_ref), nats per sequence (from samples)' },
          y: { field: 'winRate', type: 'quantitative', title: 'gold-reward win rate vs reference', axis: { format: '%' } },
          color: { field: 'method', type: 'nominal' },
          order: { field: 'kl', type: 'quantitative' },
        },
      },
      {
        mark: { type: 'text', dx: 8, align: 'left', fontSize: 10 },
        encoding: { x: { field: 'kl', type: 'quantitative' }, y: { field: 'winRate', type: 'quantitative' }, text: { field: 'label' }, color: { field: 'method', type: 'nominal' } },
      },
    ],
  }
}
