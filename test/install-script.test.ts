// scripts/install.js without devDependencies: where it finds node-gyp and cmake-js under npm, pnpm
// and yarn, and what it says when they are missing. Runs a copy of the script in a folder with no
// node_modules, as a user's install of edpo would be when the prebuild does not fit.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { tempDir } from './helpers/data-fixtures'

interface Found {
  cmd: string
  args: string[]
  file: string
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const install = require('../scripts/install.js') as {
  findNodeGyp(env: NodeJS.ProcessEnv, from: string): Found | null
  findCmakeJs(env: NodeJS.ProcessEnv, from: string): Found | null
}

const scripts = path.join(__dirname, '..', 'scripts')

function write(file: string, text: string, mode = 0o644): string {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text, { mode })
  return file
}

// A package folder with only the install scripts, as npm unpacks edpo before its install script.
function bareInstall(dir: string): string {
  const pkg = path.join(dir, 'edpo')
  for (const f of ['install.js', 'torch-paths.js']) write(path.join(pkg, 'scripts', f), fs.readFileSync(path.join(scripts, f), 'utf8'))
  return pkg
}

t.test('node-gyp: npm_config_node_gyp, then beside npm_execpath, then PATH', async (t) => {
  const dir = tempDir(t)
  const empty = path.join(dir, 'empty') // resolves nothing
  fs.mkdirSync(empty)
  const fromConfig = write(path.join(dir, 'cfg', 'node-gyp.js'), '')
  t.same(install.findNodeGyp({ npm_config_node_gyp: fromConfig }, empty), { cmd: process.execPath, args: [fromConfig], file: fromConfig })

  // npm's layout: <npm>/bin/npm-cli.js and <npm>/node_modules/node-gyp/bin/node-gyp.js.
  const npmCli = write(path.join(dir, 'npm', 'bin', 'npm-cli.js'), '')
  const bundled = write(path.join(dir, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), '')
  t.equal(install.findNodeGyp({ npm_execpath: npmCli }, empty)?.file, bundled)
  t.equal(
    install.findNodeGyp({ npm_config_node_gyp: path.join(dir, 'gone.js'), npm_execpath: npmCli }, empty)?.file,
    bundled,
    'a stale npm_config_node_gyp is skipped',
  )

  // yarn/pnpm without a bundled node-gyp: one on PATH is run as it is.
  const yarn = write(path.join(dir, 'yarn', 'bin', 'yarn.js'), '')
  const onPath = write(path.join(dir, 'bin', 'node-gyp'), '#!/bin/sh\n', 0o755)
  t.same(install.findNodeGyp({ npm_execpath: yarn, PATH: path.join(dir, 'bin') }, empty), { cmd: onPath, args: [], file: onPath })
  t.equal(install.findNodeGyp({ npm_execpath: yarn, PATH: '' }, empty), null)

  // In a checkout, the devDependency resolves.
  t.match(install.findNodeGyp({ PATH: '' }, path.join(__dirname, '..'))?.file, /node_modules\/node-gyp\/bin\/node-gyp\.js$/)
})

t.test('cmake-js: installed beside edpo, or on PATH', async (t) => {
  const dir = tempDir(t)
  const project = path.join(dir, 'project')
  write(path.join(project, 'node_modules', 'cmake-js', 'package.json'), '{"name":"cmake-js"}')
  const bin = write(path.join(project, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), '')
  t.equal(install.findCmakeJs({ PATH: '' }, path.join(project, 'node_modules', 'edpo'))?.file, bin)
  const global = write(path.join(dir, 'bin', 'cmake-js'), '#!/bin/sh\n', 0o755)
  t.equal(install.findCmakeJs({ PATH: path.join(dir, 'bin') }, dir)?.file, global)
  t.equal(install.findCmakeJs({ PATH: '' }, dir), null)
})

t.test('install.js: clear messages when a build tool is missing', async (t) => {
  const pkg = bareInstall(tempDir(t))
  const base = { HOME: process.env.HOME, PATH: '' }
  const cuda = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], { cwd: pkg, encoding: 'utf8', env: { ...base, EDPO_CUDA: '1' } })
  t.equal(cuda.status, 1)
  t.match(cuda.stderr, /EDPO_CUDA=1 builds with cmake-js, which is not installed/)
  t.match(cuda.stderr, /npm install cmake-js && EDPO_CUDA=1 npm rebuild edpo/)

  const cpu = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], {
    cwd: pkg,
    encoding: 'utf8',
    env: { ...base, npm_config_build_from_source: 'true' },
  })
  t.equal(cpu.status, 1)
  t.match(cpu.stderr, /needs node-gyp, which was not found/)
  t.match(cpu.stderr, /npm install -g node-gyp && npm rebuild edpo --build-from-source/)
})

t.test('install.js: runs the node-gyp npm names, with `rebuild`, in the package folder', async (t) => {
  const dir = tempDir(t)
  const pkg = bareInstall(dir)
  const log = path.join(dir, 'ran.json')
  const fake = write(
    path.join(dir, 'fake-node-gyp.js'),
    `require('fs').writeFileSync(${JSON.stringify(log)}, JSON.stringify({ args: process.argv.slice(2), cwd: process.cwd() }))`,
  )
  const r = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], {
    cwd: pkg,
    encoding: 'utf8',
    env: { HOME: process.env.HOME, PATH: '', npm_config_build_from_source: 'true', npm_config_node_gyp: fake },
  })
  if (/libtorch not found/.test(r.stderr)) {
    t.skip('no libtorch on this machine: the build step is not reached', () => {})
    return
  }
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /building from source against libtorch from .* with .*fake-node-gyp\.js/)
  t.same(JSON.parse(fs.readFileSync(log, 'utf8')), { args: ['rebuild'], cwd: fs.realpathSync(pkg) })
})
