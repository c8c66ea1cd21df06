#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): make what ships current: the CPU prebuild
// (prebuilds/<platform>-<arch>/edpo.node, via prebuildify) and the TypeScript output (dist/).
// Each is rebuilt only when a source is newer than it, so packing an up-to-date checkout costs
// a file walk; a rebuild goes through ccache when it is installed. Output goes to stderr so that
// `npm pack --json` stays parseable.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.resolve(__dirname, '..')
const prebuild = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'edpo.node')
const tsOut = path.join(root, 'dist', 'lib', 'index.js')

function newest(paths, filter = () => true) {
  let t = 0
  const walk = (p) => {
    let st
    try {
      st = fs.statSync(p)
    } catch {
      return
    }
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e))
    else if (filter(p)) t = Math.max(t, st.mtimeMs)
  }
  paths.forEach((p) => walk(path.join(root, p)))
  return t
}

const mtime = (f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : -1)

function run(cmd, args, env = process.env) {
  process.stderr.write(`edpo prepack: ${[cmd, ...args].join(' ')}\n`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 2, 2], env })
  if (r.status !== 0) {
    process.stderr.write(`edpo prepack: ${cmd} failed; the package was not packed. Run \`bash scripts/setup.sh\` and fix the build first.\n`)
    process.exit(r.status ?? 1)
  }
}

const bin = (name) => path.join(root, 'node_modules', '.bin', name)

// The prebuild: the CPU build of csrc/ (binding.gyp), the one every user without a compiler loads.
if (mtime(prebuild) < newest(['csrc', 'binding.gyp', 'scripts/torch-paths.js'])) {
  const env = { ...process.env }
  if (!env.CXX && spawnSync('ccache', ['--version']).status === 0) env.CXX = 'ccache g++'
  run(bin('prebuildify'), ['--napi', '--strip'], env)
} else process.stderr.write(`edpo prepack: ${path.relative(root, prebuild)} is up to date\n`)

// dist/: tsc when a .ts file or tsconfig.json is newer than its output.
if (
  mtime(tsOut) <
  Math.max(
    newest(['lib', 'bench'], (f) => f.endsWith('.ts')),
    mtime(path.join(root, 'tsconfig.json')),
  )
)
  run(bin('tsc'), ['-p', 'tsconfig.json'])
else process.stderr.write('edpo prepack: dist/ is up to date\n')
