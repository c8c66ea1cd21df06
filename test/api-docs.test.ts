// The API reference is generated from the TSDoc comments (typedoc.json, `npm run docs`); every type
// the public API mentions must be exported, or typedoc warns, which this check treats as an error.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

t.test('typedoc builds the reference without warnings', (t) => {
  const root = path.join(__dirname, '..')
  const bin = path.join(root, 'node_modules', 'typedoc', 'bin', 'typedoc')
  const r = spawnSync(process.execPath, [bin, '--emit', 'none'], { cwd: root, encoding: 'utf8', timeout: 300_000 })
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.notMatch(r.stdout, /warning/)
  t.end()
})
