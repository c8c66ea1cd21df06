// Loads the addon (finding the .node, the thread policy, the EDPO_CPU_ISA check) and re-exports
// its typed surface, which is generated (ops-generated.ts). Nothing else in lib/ touches the raw module.
import * as fs from 'node:fs'
import * as path from 'node:path'

import { EdpoInputError } from './errors'
import type * as generated from './ops-generated'

export type { DType, HostArray, NativeGroup, NativeModel, NativeReducer, NativeTensor, OpDeclarations } from './native-types'
export type {
  LoraDropoutState,
  NativeLmHead,
  NativeLoraSpec,
  NativeDeviceMemory,
  NativeMemoryStats,
  NativeGroupOptions,
  NativeModelConfig,
  NativeNamedTensors,
  NativeProfile,
  NativeReadEntry,
  NativeRuntime,
  ReducerStats,
} from './ops-generated'

/** The addon: exactly the generated surface (every entry declared in csrc's op table). */
export type Native = generated.Native

/** The package root: the nearest folder above this file holding edpo's package.json (from lib/ or dist/lib/). */
export const packageRoot = findPackageRoot(__dirname)

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json')
    if (fs.existsSync(manifest) && (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === 'edpo') return dir
    if (path.dirname(dir) === dir) return path.resolve(start, '..', '..')
  }
}

let loaded: Native | undefined
let addonPath: string | undefined

function loadFailure(cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new Error(
    [
      'edpo: could not load the native addon.',
      `  Reason: ${reason}`,
      '  edpo links libtorch 1.13 (CPU) or a newer libtorch. To fix:',
      '  - Debian/Ubuntu: apt-get install libtorch1.13 (runtime) or libtorch-dev (to build), plus libopenblas0-pthread',
      '  - another libtorch: set LIBTORCH=/path/to/libtorch (folder with include/ and lib/) and rebuild',
      '  - build from source: npm rebuild edpo --build-from-source (needs a C++17 compiler and libtorch headers)',
      "  - CUDA: EDPO_CUDA=1 npm run build:cuda against PyTorch's libtorch",
    ].join('\n'),
    { cause },
  )
}

/** Values of EDPO_CPU_ISA, the cap on the CPU kernels' instruction set (csrc/ops/cpu/cpu_isa.cc). */
export const CPU_ISA_VALUES = ['base', 'avx2', 'avx512'] as const

// The kernels read EDPO_CPU_ISA once and ignore values they do not know; a typo would silently
// run the widest kernels, so it is checked here before the addon is used.
function checkCpuIsa(): void {
  const isa = process.env.EDPO_CPU_ISA
  if (isa !== undefined && isa !== '' && !(CPU_ISA_VALUES as readonly string[]).includes(isa))
    throw new EdpoInputError(`EDPO_CPU_ISA: '${isa}' is not one of ${CPU_ISA_VALUES.join(', ')} (or unset for the widest the CPU supports)`)
}

// ATen's intra-op threads are libgomp's. By default they spin after each parallel region while
// OpenBLAS (its own pthreads) runs the matmuls, so spinning and GEMM threads share the cores: on
// a loaded 2-core machine 78% of a CPU training step went to that spin (bench/RESULTS.md). libgomp
// reads its policy once, when the addon loads it; a policy the user set (OMP_WAIT_POLICY or
// GOMP_SPINCOUNT) wins. Child processes (dist ranks) inherit the same setting.
function applyThreadWaitPolicy(): void {
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) process.env.OMP_WAIT_POLICY = 'PASSIVE'
}

/** The addon, loaded once (prebuilds/ first, then build/Release via node-gyp-build). */
export function nativeAddon(): Native {
  if (loaded) return loaded
  checkCpuIsa()
  applyThreadWaitPolicy()
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string }
    addonPath = nodeGypBuild.resolve(packageRoot)
    loaded = nodeGypBuild(packageRoot) as Native
  } catch (e) {
    throw loadFailure(e)
  }
  return loaded
}

/** Where the addon was loaded from (after the first load). */
export function nativeAddonPath(): string | undefined {
  return addonPath
}
