// `edpo doctor`: what this install runs on.
import { runtime } from '../runtime'

export function doctorCommand(): number {
  const r = runtime()
  const rows: [string, string][] = [
    ['libtorch', r.libtorchVersion],
    ['addon', r.addonPath ?? '?'],
    ['built with', r.buildSystem + (r.cudaBuild ? ' + CUDA' : '')],
    ['CUDA available', String(r.cudaAvailable)],
    ['CPU kernels', r.cpuKernels],
    ['threads', String(r.threads)],
    ['node', process.version],
  ]
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(16)}${v}\n`)
  return 0
}
