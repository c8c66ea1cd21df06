#!/usr/bin/env node
// `npm install edpo`: use a prebuilt binary (prebuilds/<platform>-<arch>/) when one loads; else
// build from source: node-gyp for the CPU build, cmake-js when EDPO_CUDA=1. Before a source build,
// check that libtorch and the build tool are there and say how to get them when they are not.
// Only production dependencies exist in a user's install, so the build tools are looked up the
// way the package managers provide them, never as devDependencies.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.resolve(__dirname, '..')

/** A command to run: `node <js>` for a script, or an executable. */
function command(file) {
  return /\.[cm]?js$/.test(file) ? { cmd: process.execPath, args: [file], file } : { cmd: file, args: [], file }
}

function onPath(name, env) {
  const exts = process.platform === 'win32' ? (env.PATHEXT || '.EXE;.CMD').split(';') : ['']
  for (const dir of (env.PATH || '').split(path.delimiter).filter(Boolean))
    for (const ext of exts) {
      const f = path.join(dir, name + ext)
      try {
        fs.accessSync(f, fs.constants.X_OK)
        if (fs.statSync(f).isFile()) return f
      } catch {}
    }
  return null
}

function resolveFrom(dir, request) {
  try {
    return require.resolve(request, { paths: [dir] })
  } catch {
    return null
  }
}

/**
 * node-gyp, in this order: npm_config_node_gyp (npm and pnpm set it to the node-gyp they bundle),
 * the node-gyp bundled beside the running package manager (npm_execpath), one installed where
 * edpo is (a checkout's devDependency, or the user's), a node-gyp on PATH. null when none.
 */
function findNodeGyp(env = process.env, from = root) {
  if (env.npm_config_node_gyp && fs.existsSync(env.npm_config_node_gyp)) return command(env.npm_config_node_gyp)
  if (env.npm_execpath) {
    // npm: <npm>/bin/npm-cli.js with <npm>/node_modules/node-gyp; walk up a few folders for others.
    let d = path.dirname(path.resolve(env.npm_execpath))
    for (let i = 0; i < 4; i++, d = path.dirname(d)) {
      const f = path.join(d, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
      if (fs.existsSync(f)) return command(f)
    }
  }
  const local = resolveFrom(from, 'node-gyp/bin/node-gyp.js')
  if (local) return command(local)
  const bin = onPath('node-gyp', env)
  return bin ? command(bin) : null
}

/** cmake-js, for EDPO_CUDA=1: installed where edpo is (an optional peer dependency), or on PATH. */
function findCmakeJs(env = process.env, from = root) {
  const local = resolveFrom(from, 'cmake-js/bin/cmake-js')
  if (local) return command(local)
  const bin = onPath('cmake-js', env)
  return bin ? command(bin) : null
}

function fail(message) {
  process.stderr.write(`\nedpo: ${message}\n\n`)
  process.exit(1)
}

function main() {
  const cuda = process.env.EDPO_CUDA === '1'
  const fromSource = process.env.npm_config_build_from_source === 'true' || cuda

  if (!fromSource) {
    try {
      require('node-gyp-build').resolve(root)
      return // a prebuild (or an earlier build) is there
    } catch {
      if (process.env.PREBUILDS_ONLY) fail(`no prebuilt binary for ${process.platform}-${process.arch} (napi) and PREBUILDS_ONLY is set, so nothing is built.`)
    }
  }

  const tool = cuda ? findCmakeJs() : findNodeGyp()
  if (!tool) {
    if (cuda)
      fail(
        'EDPO_CUDA=1 builds with cmake-js, which is not installed. Install it next to edpo and rebuild:\n' +
          '  npm install cmake-js && EDPO_CUDA=1 npm rebuild edpo   (or: npm install -g cmake-js)',
      )
    fail(
      'a source build needs node-gyp, which was not found (npm bundles it; pnpm and yarn may not).\n' +
        'Install it and rebuild: npm install -g node-gyp && npm rebuild edpo --build-from-source\n' +
        '(or, in yarn/pnpm projects: add node-gyp as a dev dependency, or put node-gyp on PATH).',
    )
  }

  const torch = spawnSync(process.execPath, [path.join(__dirname, 'torch-paths.js'), 'check'], { encoding: 'utf8' })
  if (torch.status !== 0) fail(`${torch.stderr.trim()}\nThen run npm rebuild edpo.`)
  process.stderr.write(`edpo: building from source against ${torch.stdout.trim()} with ${tool.file}\n`)

  const r = spawnSync(tool.cmd, [...tool.args, 'rebuild'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
  if (r.status !== 0) fail('the source build failed (see above). edpo needs a C++17 compiler and libtorch headers.')
}

if (require.main === module) main()
module.exports = { findNodeGyp, findCmakeJs }
