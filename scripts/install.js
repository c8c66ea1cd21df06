#!/usr/bin/env node
// `npm install edpo`: use a prebuilt binary (prebuilds/<platform>-<arch>/) when one loads; else
// build from source: node-gyp for the CPU build, cmake-js when EDPO_CUDA=1. Before a source build,
// check that libtorch is there and say how to get it when it is not.
'use strict'
const path = require('path')
const { spawnSync } = require('child_process')

const root = path.resolve(__dirname, '..')
const fromSource = process.env.npm_config_build_from_source === 'true' || process.env.EDPO_CUDA === '1'

function fail(message) {
  process.stderr.write(`\nedpo: ${message}\n\n`)
  process.exit(1)
}

if (!fromSource) {
  try {
    require('node-gyp-build').resolve(root)
    process.exit(0) // a prebuild (or an earlier build) is there
  } catch {
    if (process.env.PREBUILDS_ONLY)
      fail(`no prebuilt binary for ${process.platform}-${process.arch} (napi) and PREBUILDS_ONLY is set, so nothing is built.`)
  }
}

const torch = spawnSync(process.execPath, [path.join(__dirname, 'torch-paths.js'), 'check'], { encoding: 'utf8' })
if (torch.status !== 0) fail(`${torch.stderr.trim()}\nThen run npm rebuild edpo.`)
process.stderr.write(`edpo: building from source against ${torch.stdout.trim()}\n`)

const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
let r
if (process.env.EDPO_CUDA === '1') {
  r = run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'rebuild'])
} else {
  const nodeGyp = process.env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js')
  r = run(process.execPath, [nodeGyp, 'rebuild'])
}
if (r.status !== 0) fail('the source build failed (see above). edpo needs a C++17 compiler and libtorch headers.')
