// worker.terminate() while the worker runs native code must not take the host down (it used to
// abort with "terminate called after throwing an instance of 'Napi::Error'", exit 134).
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

t.test('terminating a Worker mid-op leaves the host running', (t) => {
  for (let round = 0; round < 3; round++) {
    const r = spawnSync(process.execPath, [...process.execArgv, path.join(__dirname, 'helpers', 'terminate-host.ts')], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    t.equal(r.signal, null, `round ${round}: no signal (stderr: ${r.stderr.slice(-500)})`)
    t.equal(r.status, 0, `round ${round}: exit 0`)
    t.match(r.stdout, /^OK$/m, `round ${round}: the host printed OK`)
  }
  t.end()
})
