// Fuzzes the public surface (Tensor, ops, io, model config) with deterministic malformed calls
// (test/helpers/fuzz-child.ts) in a child process, so a native crash fails this test instead of
// killing tap: no crash, no call accepted, every message names the argument it is about.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

t.test('malformed calls are rejected by name, without crashing', (t) => {
  const r = spawnSync(process.execPath, [...process.execArgv, path.join(__dirname, 'helpers', 'fuzz-child.ts'), '10'], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
  })
  t.equal(r.signal, null, `no signal (stderr: ${r.stderr.slice(-2000)})`)
  t.equal(r.status, 0, 'exit 0')
  const last = r.stdout.trim().split('\n').pop() ?? ''
  const summary = JSON.parse(last.startsWith('{') ? last : '{"total":0,"failures":["no summary"]}') as { total: number; failures: string[] }
  t.ok(summary.total >= 1000, `${summary.total} generated calls (at least 1000)`)
  t.same(summary.failures, [], 'every call rejected with a message naming its argument')
  t.end()
})
