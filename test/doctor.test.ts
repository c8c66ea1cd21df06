// `edpo doctor` as users run it (node dist/lib/cli/main.js doctor): every field present and
// plausible, and the BLAS verdict following the measured matmul speed, including a real reference
// BLAS when one is at hand (EDPO_TEST_REFERENCE_BLAS=<folder with the reference libblas.so.3>,
// or Debian's libblas3 installed beside OpenBLAS).
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { SLOW_BLAS_GFLOPS, addonKind, blasVerdict } from '../lib/cli/doctor-command'

const root = path.join(__dirname, '..')
const MAIN = path.join(root, 'dist', 'lib', 'cli', 'main.js')

function doctor(env: NodeJS.ProcessEnv = {}): Map<string, string> {
  const r = spawnSync(process.execPath, [MAIN, 'doctor'], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 })
  if (r.status !== 0) throw new Error(`edpo doctor exited ${r.status}: ${r.stderr}`)
  return new Map(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, 16).trim(), l.slice(16)] as [string, string]),
  )
}

t.test('edpo doctor shows every field', async (t) => {
  const d = doctor()
  t.same([...d.keys()], ['edpo', 'addon', 'libtorch', 'BLAS', 'threads', 'CPU kernels', 'CUDA', 'node'])
  t.equal(d.get('edpo'), (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version)
  t.match(d.get('addon'), /^(prebuild, prebuilds\/[\w-]+\/edpo\.node|source build, build\/Release\/edpo\.node) \((node-gyp|cmake-js)( \+ CUDA)?\)$/)
  t.match(d.get('libtorch'), /^\d+\.\d+\.\d+/)
  t.match(d.get('BLAS'), /^(OpenBLAS|MKL|optimised BLAS|reference BLAS \(slow; install libopenblas0-pthread\)): [\d.]+ GFLOP\/s on a 512×512 fp32 matmul/)
  const gflops = Number(/([\d.]+) GFLOP\/s/.exec(d.get('BLAS')!)![1])
  t.ok(gflops > 0 && Number.isFinite(gflops), `${gflops} GFLOP/s measured`)
  t.equal(/^reference BLAS/.test(d.get('BLAS')!), gflops < SLOW_BLAS_GFLOPS, 'the verdict follows the measurement')
  t.match(d.get('threads'), /^[1-9]\d* /)
  t.match(d.get('CPU kernels'), /^(avx512|avx2|base)$/)
  t.match(d.get('CUDA'), /^(none: a CPU build|none visible|\d+ devices?)/)
  t.equal(d.get('node'), process.version)

  // The settings doctor reports are the ones in force.
  t.match(doctor({ OMP_NUM_THREADS: '1' }).get('threads'), /^1 /)
  t.equal(doctor({ EDPO_CPU_ISA: 'base' }).get('CPU kernels'), 'base')
})

t.test('the BLAS verdict and the addon kind', async (t) => {
  t.match(blasVerdict(7.1, '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3'), /^reference BLAS \(slow; install libopenblas0-pthread\): 7\.1 GFLOP\/s/)
  t.match(blasVerdict(97, '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3'), /^OpenBLAS: 97\.0 GFLOP\/s/)
  t.match(blasVerdict(300, undefined), /^optimised BLAS: 300\.0 GFLOP\/s/, 'a libtorch with MKL inside maps no libblas')
  t.match(
    addonKind({ addonPath: path.join(root, 'prebuilds', 'linux-x64', 'edpo.node'), buildSystem: 'node-gyp', cudaBuild: false }),
    /^prebuild, prebuilds\/linux-x64\/edpo\.node \(node-gyp\)$/,
  )
  t.match(
    addonKind({ addonPath: path.join(root, 'build', 'Release', 'edpo.node'), buildSystem: 'cmake-js', cudaBuild: true }),
    /^source build, build\/Release\/edpo\.node \(cmake-js \+ CUDA\)$/,
  )
})

// Debian's libtorch links libblas.so.3; the reference one first on the library path takes over.
const referenceBlas = [process.env.EDPO_TEST_REFERENCE_BLAS, '/usr/lib/x86_64-linux-gnu/blas', '/usr/lib/aarch64-linux-gnu/blas'].find(
  (d): d is string => d !== undefined && fs.existsSync(path.join(d, 'libblas.so.3')),
)
t.test(
  'the reference BLAS is called slow',
  { skip: referenceBlas ? false : 'no reference libblas.so.3 here (Debian: libblas3, or EDPO_TEST_REFERENCE_BLAS)' },
  async (t) => {
    const d = doctor({ LD_LIBRARY_PATH: referenceBlas })
    t.match(d.get('BLAS'), /^reference BLAS \(slow; install libopenblas0-pthread\): [\d.]+ GFLOP\/s/)
  },
)
