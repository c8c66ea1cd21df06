// The README's ten-line example runs as written (with 'edpo' resolved to this checkout).
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as vm from 'node:vm'

import t from 'tap'
import * as ts from 'typescript'

import * as edpo from '../lib/index'

t.test('README example of ops.epsilonDpoLoss', (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## The fused ε-DPO loss in ten lines'))
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  t.ok(code, 'found the example')
  const lines = code!.trim().split('\n')
  t.ok(lines.length <= 11, `example has ${lines.length} lines (import + 10)`)
  const js = ts.transpileModule(code!, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText
  const logged: unknown[][] = []
  vm.runInNewContext(js, {
    require: (name: string) => {
      if (name !== 'edpo') throw new Error(`unexpected import ${name}`)
      return edpo
    },
    exports: {},
    console: { log: (...args: unknown[]) => logged.push(args) },
  })
  t.equal(logged.length, 1)
  const [loss, steps, betas] = logged[0]!
  t.ok(Number.isFinite(loss as number), `loss ${loss}`)
  t.equal((steps as BigInt64Array).length, 2)
  t.equal((betas as Float32Array).length, 2)
  t.end()
})
