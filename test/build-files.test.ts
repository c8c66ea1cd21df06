// binding.gyp (node-gyp, prebuildify) and CMakeLists.txt (cmake-js, CUDA) must build the same
// sources, and every C++/CUDA file in the tree must be built by one of them.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

const root = path.resolve(__dirname, '..')

function walk(dir: string, ext: RegExp): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.posix.join(dir, e.name)
    if (e.isDirectory()) return walk(rel, ext)
    return ext.test(e.name) ? [rel] : []
  })
}

function cmakeList(text: string, name: string): string[] {
  const m = new RegExp(`set\\(${name}\\s+([^)]*)\\)`).exec(text)
  if (!m) throw new Error(`CMakeLists.txt: no set(${name} ...)`)
  return m[1]!.split(/\s+/).filter(Boolean)
}

t.test('node-gyp and cmake-js build the same CPU sources', (t) => {
  const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '')) as {
    targets: { target_name: string; sources: string[] }[]
  }
  const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8')
  const target = gyp.targets[0]!
  t.equal(target.target_name, 'edpo')
  t.match(cmake, /add_library\(edpo SHARED/, 'same target name')
  t.same([...target.sources].sort(), cmakeList(cmake, 'EDPO_SOURCES').sort())
  t.end()
})

t.test('every source file is built', (t) => {
  const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8')
  const built = new Set([...cmakeList(cmake, 'EDPO_SOURCES'), ...cmakeList(cmake, 'EDPO_CUDA_SOURCES')])
  for (const file of [...walk('csrc', /\.(cc|cu)$/)]) t.ok(built.has(file), `${file} is in a build`)
  for (const file of built) t.ok(fs.existsSync(path.join(root, file)), `${file} exists`)
  t.end()
})

// The cmake-js build is not what test/worker-terminate.test.ts loads, so its defines are pinned
// here: without NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, worker.terminate() aborts the process.
t.test('node-gyp and cmake-js share the node-addon-api defines', (t) => {
  const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '')) as {
    targets: { defines: string[] }[]
  }
  const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8')
  for (const define of ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_ADDON_API_CPP_EXCEPTIONS_ALL', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS']) {
    t.ok(gyp.targets[0]!.defines.includes(define), `binding.gyp defines ${define}`)
    t.match(cmake, new RegExp(`target_compile_definitions\\(edpo PRIVATE[^)]*\\b${define}\\b`), `CMakeLists.txt defines ${define}`)
  }
  t.end()
})
