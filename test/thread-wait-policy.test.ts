// ATen's OpenMP threads sleep between parallel regions instead of spinning against OpenBLAS's
// threads (lib/core/native.ts), unless the user chose a policy. OMP_DISPLAY_ENV=VERBOSE makes libgomp
// print the spin count it took when the addon loaded it (its default is 300000), so this checks
// what libgomp uses, not just the variable.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import t from 'tap'

const lib = path.join(__dirname, '..', 'lib', 'index')

function policySeen(env: Record<string, string>): { stderr: string; variable: string } {
  const clean = { ...process.env }
  delete clean.OMP_WAIT_POLICY
  delete clean.GOMP_SPINCOUNT
  const p = spawnSync(
    process.execPath,
    [...process.execArgv, '-e', `require(${JSON.stringify(lib)}).runtime(); console.log(process.env.OMP_WAIT_POLICY ?? '')`],
    {
      env: { ...clean, OMP_DISPLAY_ENV: 'VERBOSE', ...env },
      encoding: 'utf8',
    },
  )
  if (p.status !== 0) throw new Error(p.stderr)
  return { stderr: p.stderr, variable: p.stdout.trim() }
}

t.test('unset: libgomp runs passive, without spinning', async (t) => {
  const r = policySeen({})
  t.match(r.stderr, /GOMP_SPINCOUNT = '0'/)
  t.equal(r.variable, 'PASSIVE')
})

t.test("the user's OMP_WAIT_POLICY wins", async (t) => {
  const r = policySeen({ OMP_WAIT_POLICY: 'active' })
  t.match(r.stderr, /OMP_WAIT_POLICY = 'ACTIVE'/)
  t.equal(r.variable, 'active')
})

t.test("the user's GOMP_SPINCOUNT wins", async (t) => {
  const r = policySeen({ GOMP_SPINCOUNT: '1000' })
  t.match(r.stderr, /GOMP_SPINCOUNT = '1000'/)
  t.equal(r.variable, '')
})
