// The package as users get it: `npm pack`, then `npm install <tarball>` into a fresh project with
// PREBUILDS_ONLY=1 (no compiler, no build/), then the op, a 2-step Trainer run, the ESM entry and
// the load-failure message, all from that install.
import { execFileSync, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const root = path.resolve(__dirname, '..')

t.test('npm pack → install with PREBUILDS_ONLY=1 → use', async (t) => {
  // npm pack runs prepack (scripts/prepack.js), which refreshes the prebuild and dist/ when a
  // source is newer; with both current it only compares times, so packing stays quick.
  const started = Date.now()
  const work = tempDir(t)
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8' })) as {
    filename: string
    size: number
    files: { path: string }[]
  }[]
  t.comment(`npm pack took ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const files = packed[0]!.files.map((f) => f.path)
  for (const needed of [
    'dist/lib/index.js',
    'dist/lib/index.d.ts',
    'dist/lib/cli/main.js',
    'esm/index.mjs',
    'prebuilds/linux-x64/edpo.node',
    'binding.gyp',
    'CMakeLists.txt',
    'csrc/ops/epsilon_dpo.cc',
    'csrc/ops/cuda/epsilon_dpo_kernels.cu',
    'scripts/install.js',
    'scripts/torch-paths.js',
    'assets/demo/tokenizer.json',
    'README.md',
    'LICENSE',
  ])
    t.ok(files.includes(needed), `tarball has ${needed}`)
  for (const f of files) t.notMatch(f, /^(test|bench|build|dist\/bench|\.ci|runs|examples)\//, `no ${f}`)
  t.ok(packed[0]!.size < 5 * 2 ** 20, `tarball ${(packed[0]!.size / 2 ** 20).toFixed(2)} MiB < 5 MiB`)

  const project = path.join(work, 'consumer')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  const install = spawnSync('npm', ['install', path.join(work, packed[0]!.filename), '--no-audit', '--no-fund'], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, PREBUILDS_ONLY: '1' },
  })
  t.equal(install.status, 0, install.stderr)
  const installed = path.join(project, 'node_modules', 'edpo')
  t.notOk(fs.existsSync(path.join(installed, 'build')), 'nothing was compiled')

  // A light install: no charting library, no build tools (cmake-js is an optional peer).
  const lock = JSON.parse(fs.readFileSync(path.join(project, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> }
  const installedPackages = Object.keys(lock.packages).filter((k) => k !== '')
  t.comment(`${installedPackages.length} packages installed`)
  t.ok(installedPackages.length <= 12, `${installedPackages.length} packages installed (edpo and its production dependencies)`)
  for (const heavy of ['vega', 'vega-lite', 'cmake-js', 'node-gyp']) t.notOk(installedPackages.includes(`node_modules/${heavy}`), `${heavy} not installed`)

  // The demo's plots draw from the installed package alone.
  const plot = spawnSync(
    process.execPath,
    [
      '-e',
      `
    const { renderSvg, curvesSpec } = require(${JSON.stringify(path.join(installed, 'dist', 'lib', 'eval', 'plots.js'))})
    process.stdout.write(renderSvg(curvesSpec('t', [1, 2, 3].map((step) => ({ run: 'ε-DPO', step, metric: 'loss', value: 1 / step })))))`,
    ],
    { cwd: project, encoding: 'utf8' },
  )
  t.equal(plot.status, 0, plot.stderr)
  t.match(plot.stdout, /^<svg [\s\S]*optimizer step[\s\S]*ε-DPO[\s\S]*<\/svg>\s*$/)

  // The op and a 2-step Trainer run, from the installed package.
  const model = makeTrainableModel(t)
  const data = writeToyPreferences(work, 16)
  const script = `
    const { Tensor, ops, Trainer, runtime } = require('edpo')
    ;(async () => {
      const p = Tensor.randn([2, 3, 11]); p.requiresGrad = true
      const out = ops.epsilonDpoLoss({ policyLogits: p, referenceLogits: Tensor.randn([2, 3, 11]), labels: Tensor.zeros([2, 3], { dtype: 'int64' }), lossMask: Tensor.full([2, 3], 1), beta: 0.1, epsilon: 0.01 })
      out.loss.backward()
      const trainer = await Trainer.create({ model: ${JSON.stringify(model)}, data: [${JSON.stringify(data)}], out: ${JSON.stringify(path.join(work, 'run'))}, batchSize: 4, maxSteps: 2, maxLength: 32 }, { log: () => {} })
      const state = await trainer.train()
      console.log(JSON.stringify({ loss: out.loss.item(), grad: p.grad.shape, step: state.step, addon: runtime().addonPath }))
    })().catch((e) => { console.error(e); process.exit(1) })`
  const run = spawnSync(process.execPath, ['-e', script], { cwd: project, encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!)
  t.ok(Number.isFinite(result.loss))
  t.same(result.grad, [2, 3, 11])
  t.equal(result.step, 2)
  t.match(result.addon, /node_modules\/edpo\/prebuilds\/linux-x64\/edpo\.node$/, 'the prebuilt binary was loaded')

  const esm = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "import { Tensor, ops, Trainer, CausalLM } from 'edpo'; console.log(typeof Trainer, typeof CausalLM, typeof ops.epsilonDpoLoss, Tensor.zeros([3]).shape.join())",
    ],
    { cwd: project, encoding: 'utf8' },
  )
  t.equal(esm.stdout.trim(), 'function function function 3', esm.stderr)

  const doctor = spawnSync(process.execPath, [path.join(installed, 'dist', 'lib', 'cli', 'main.js'), 'doctor'], { cwd: project, encoding: 'utf8' })
  t.match(doctor.stdout, /libtorch +\d+\.\d+/)
  t.match(doctor.stdout, /addon +prebuild, prebuilds\/linux-x64\/edpo\.node/, 'doctor says the prebuild loaded')
  t.match(doctor.stdout, /BLAS +.*GFLOP\/s/)

  // A binary that cannot load gives the install help, not a bare dlopen error.
  fs.writeFileSync(path.join(installed, 'prebuilds', 'linux-x64', 'edpo.node'), 'not a shared object')
  const broken = spawnSync(process.execPath, ['-e', "require('edpo').Tensor.zeros([1])"], { cwd: project, encoding: 'utf8' })
  t.not(broken.status, 0)
  t.match(broken.stderr, /edpo: could not load the native addon/)
  t.match(broken.stderr, /libtorch-dev/)
  t.match(broken.stderr, /LIBTORCH=/)
  t.match(broken.stderr, /--build-from-source/)
})

t.test('ESM and CommonJS entries export the same names', async (t) => {
  const cjs = Object.keys(require(root) as object)
    .filter((k) => k !== '__esModule')
    .sort()
  const esm = (await import(path.join(root, 'esm', 'index.mjs'))) as Record<string, unknown>
  t.same(
    Object.keys(esm)
      .filter((k) => k !== 'default' && k !== '__esModule')
      .sort(),
    cjs,
  )
})
