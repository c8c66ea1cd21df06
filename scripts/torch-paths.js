#!/usr/bin/env node
// Locates libtorch for binding.gyp: `node scripts/torch-paths.js include|libdir|abi|check`.
// Order: $LIBTORCH (an unpacked libtorch or a PyTorch install's torch/ folder), $Torch_DIR
// (the folder holding TorchConfig.cmake), then Debian's libtorch-dev under /usr.
'use strict'
const fs = require('node:fs')
const path = require('node:path')

function prefixFromTorchDir(dir) {
  // <prefix>/share/cmake/Torch, <prefix>/lib/<triplet>/cmake/Torch, ...: walk up to include/torch.
  let d = path.resolve(dir)
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(d, 'include', 'torch'))) return d
    d = path.dirname(d)
  }
  return null
}

function locate() {
  const candidates = []
  if (process.env.LIBTORCH) candidates.push({ prefix: path.resolve(process.env.LIBTORCH), from: 'LIBTORCH' })
  if (process.env.Torch_DIR) {
    const p = prefixFromTorchDir(process.env.Torch_DIR)
    candidates.push({ prefix: p ?? process.env.Torch_DIR, from: 'Torch_DIR' })
  }
  candidates.push({ prefix: '/usr', from: 'Debian libtorch-dev' })
  for (const c of candidates) {
    const include = path.join(c.prefix, 'include')
    if (!fs.existsSync(path.join(include, 'torch', 'csrc', 'api', 'include'))) continue
    const libdirs = [path.join(c.prefix, 'lib'), path.join(c.prefix, 'lib', 'x86_64-linux-gnu'), path.join(c.prefix, 'lib', 'aarch64-linux-gnu')]
    const libdir = libdirs.find((d) => fs.existsSync(path.join(d, 'libtorch_cpu.so')))
    if (!libdir) continue
    return { ...c, include, libdir }
  }
  return null
}

// The C++ ABI libtorch was built with, from its CMake config (PyTorch wheels before 2.7 used 0).
function abi(found) {
  const configs = [path.join(found.prefix, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), path.join(found.libdir, 'cmake', 'Torch', 'TorchConfig.cmake')]
  for (const f of configs) {
    if (!fs.existsSync(f)) continue
    const m = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(fs.readFileSync(f, 'utf8'))
    if (m) return m[1]
  }
  return '1'
}

const found = locate()
const what = process.argv[2]
if (!found) {
  process.stderr.write(
    'edpo: libtorch not found. Install it (Debian/Ubuntu: apt-get install libtorch-dev ' +
      'libopenblas0-pthread), or set LIBTORCH=/path/to/libtorch (the folder with include/ and lib/), ' +
      'or Torch_DIR=/path/to/share/cmake/Torch.\n',
  )
  process.exit(1)
}
const out = {
  // /usr/include is a default search path; naming it with -I breaks libstdc++'s #include_next.
  include: [found.include, path.join(found.include, 'torch', 'csrc', 'api', 'include')].filter((d) => d !== '/usr/include').join(' '),
  libdir: found.libdir,
  abi: abi(found),
  check: `libtorch from ${found.from}: ${found.prefix}`,
}
if (!(what in out)) {
  process.stderr.write('usage: torch-paths.js include|libdir|abi|check\n')
  process.exit(2)
}
process.stdout.write(out[what] + '\n')
