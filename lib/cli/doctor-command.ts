// `edpo doctor`: what this install runs on: the edpo version, which binary loaded (prebuild or
// source build), the BLAS as measured, threads, libtorch, CPU kernels and CUDA devices.
import { EdpoInputError } from '../core/errors'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { packageRoot } from '../core/native'
import { runtime, type RuntimeInfo } from '../core/runtime'
import { Tensor } from '../core/tensor'

/**
 * Below this a 512×512 fp32 matmul is running on the reference BLAS. Measured on this project's
 * 2-core x86 build machine with Debian 12's libtorch 1.13: 97–100 GFLOP/s with OpenBLAS
 * (libopenblas0-pthread) against 7.1 GFLOP/s with the reference libblas3 put first (LD_LIBRARY_PATH).
 * The reference BLAS is a scalar triple loop, single-threaded: ~2 flops/cycle, so even a 5 GHz
 * core stays near 10; OpenBLAS on one AVX core already passes 25. 20 sits between the two.
 */
export const SLOW_BLAS_GFLOPS = 20

/** The best GFLOP/s of a 512×512 fp32 matmul over 3 batches of ~50 ms (the machine may be shared). */
export function matmulGflops(n = 512): number {
  const a = Tensor.randn([n, n])
  const b = Tensor.randn([n, n])
  try {
    const once = (): number => {
      const t0 = process.hrtime.bigint()
      a.matmul(b).dispose()
      return Number(process.hrtime.bigint() - t0) / 1e9
    }
    once() // warm-up: BLAS thread pools, page faults
    const reps = Math.max(1, Math.ceil(0.05 / once()))
    let best = Infinity
    for (let batch = 0; batch < 3; batch++) {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < reps; i++) a.matmul(b).dispose()
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9 / reps)
    }
    return (2 * n ** 3) / best / 1e9
  } finally {
    a.dispose()
    b.dispose()
  }
}

/** The libblas.so.3 this process mapped (Debian's alternatives pick it), when /proc tells. */
function mappedBlas(): string | undefined {
  try {
    const line = fs
      .readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .find((l) => /\/libblas\.so/.test(l))
    return line?.slice(line.indexOf('/'))
  } catch {
    return undefined
  }
}

/** The BLAS line: the verdict comes from the measured speed; the library file only names it. */
export function blasVerdict(gflops: number, library: string | undefined): string {
  const speed = `${gflops.toFixed(1)} GFLOP/s on a 512×512 fp32 matmul${library ? ` (${library})` : ''}`
  if (gflops < SLOW_BLAS_GFLOPS) return `reference BLAS (slow; install libopenblas0-pthread): ${speed}`
  const name = library === undefined ? 'optimised BLAS' : /openblas/i.test(library) ? 'OpenBLAS' : /mkl/i.test(library) ? 'MKL' : 'optimised BLAS'
  return `${name}: ${speed}`
}

/** Prebuild or source build, from the file node-gyp-build resolved. */
export function addonKind(r: Pick<RuntimeInfo, 'addonPath' | 'buildSystem' | 'cudaBuild'>): string {
  if (r.addonPath === undefined) return 'not loaded'
  const file = path.relative(packageRoot, r.addonPath) || r.addonPath
  const how = `${r.buildSystem}${r.cudaBuild ? ' + CUDA' : ''}`
  return /(^|[\\/])prebuilds[\\/]/.test(file) ? `prebuild, ${file} (${how})` : `source build, ${file} (${how})`
}

// CUDA devices: libtorch reports only whether CUDA works, so count by placing a tensor on each
// index until one fails; names come from the NVIDIA driver's /proc files when it has them.
function cudaDevices(r: RuntimeInfo): string {
  if (!r.cudaBuild) return 'none: a CPU build (for GPUs, build with EDPO_CUDA=1 against a CUDA libtorch)'
  if (!r.cudaAvailable) return 'none visible: a CUDA build, but libtorch finds no GPU (driver, CUDA_VISIBLE_DEVICES?)'
  let count = 0
  for (; count < 64; count++) {
    try {
      Tensor.zeros([1], { device: `cuda:${count}` }).dispose()
    } catch {
      break
    }
  }
  let names: string[] = []
  try {
    const dir = '/proc/driver/nvidia/gpus'
    names = fs.readdirSync(dir).map((g) => /Model:\s*(.+)/.exec(fs.readFileSync(path.join(dir, g, 'information'), 'utf8'))?.[1]?.trim() ?? '?')
  } catch {}
  return `${count} device${count === 1 ? '' : 's'}${names.length === count ? `: ${names.join(', ')}` : ''}`
}

/** The version in edpo's package.json. */
export function edpoVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version
}

export function doctorCommand(argv: readonly string[] = []): number {
  if (argv.length > 0) throw new EdpoInputError(`edpo doctor takes no arguments, got '${argv[0]}'`)
  const version = edpoVersion()
  const r = runtime()
  const rows: [string, string][] = [
    ['edpo', version],
    ['addon', addonKind(r)],
    ['libtorch', r.libtorchVersion],
    ['BLAS', blasVerdict(matmulGflops(), mappedBlas())],
    ['threads', `${r.threads} (OMP_NUM_THREADS or setThreads() to change)`],
    ['CPU kernels', r.cpuKernels],
    ['CUDA', cudaDevices(r)],
    ['node', process.version],
  ]
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(16)}${v}\n`)
  return 0
}
