// The method registry (lib/train/methods/index.ts) as the one place that names methods: the
// commands' choices come from it, no other layer dispatches on a method's name, each method's
// options are its own (an error with another method, absent from another method's config), and a
// checkpoint written before the options were per method (every method's defaults stored) resumes.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { COMPLETE_MARKER } from '../lib/train/checkpoints'
import { checkMethodOptions, storedTrainConfig, TRAIN_OPTIONS, trainConfigSchema } from '../lib/train/config'
import { METHOD_NAMES, METHODS, ownOptions, TRAIN_METHODS } from '../lib/train/methods'
import { readMetrics } from '../lib/train/metrics-log'
import type { OptionSpec } from '../lib/train/option-table'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const LIB = path.join(__dirname, '..', 'lib')
const METHODS_DIR = path.join(LIB, 'train', 'methods')

// Files outside the registry that may name a method, and why: the demo's default selection and
// its report's section on ε-DPO's β are the study's content, not a dispatch.
const ALLOWED = new Set(['demo/config.ts', 'demo/report.ts'])

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return p === METHODS_DIR ? [] : sources(p)
    return e.name.endsWith('.ts') ? [p] : []
  })
}

/** Quoted method names in `file`'s code (comments removed). */
function namedMethods(file: string, names: readonly string[]): string[] {
  const code = fs
    .readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '')
  const quoted = new RegExp(`['"\`](${names.map((n) => n.replace(/-/g, '\\-')).join('|')})['"\`]`, 'g')
  return [...code.matchAll(quoted)].map((m) => m[1]!)
}

t.test('only the registry names the methods', (t) => {
  // 'sft' is also the command's name (edpo sft): the scan looks for the train methods.
  const names = TRAIN_METHODS as readonly string[]
  t.ok(names.length >= 4, 'the scan has names to look for')
  const found = sources(LIB)
    .map((file) => [path.relative(LIB, file), namedMethods(file, names)] as const)
    .filter(([, hits]) => hits.length > 0)
  const outside = found.filter(([file]) => !ALLOWED.has(file))
  t.same(outside, [], 'no file outside lib/train/methods/ dispatches on a method name')
  // The scan itself sees a name where one is written.
  const probe = path.join(tempDir(t), 'probe.ts')
  fs.writeFileSync(probe, "// 'dpo' in a comment is fine\nif (method === 'tr-dpo') sync()\n")
  t.same(namedMethods(probe, names), ['tr-dpo'])
  t.end()
})

t.test("the commands' method choices come from the registry", (t) => {
  t.same(
    TRAIN_METHODS,
    METHOD_NAMES.filter((n) => METHODS[n].data === 'pairs'),
  )
  const methodSchema = TRAIN_OPTIONS.method.schema
  for (const name of TRAIN_METHODS) t.ok(methodSchema.safeParse(name).success, `--method ${name}`)
  t.notOk(methodSchema.safeParse('sft').success, 'sft is `edpo sft`, not a --method of edpo train')
  t.notOk(methodSchema.safeParse('ppo').success)
  t.end()
})

t.test("a method's options are an error with any other method, and absent from its config", (t) => {
  const base = { model: 'm', data: ['d'], out: 'o' }
  let checked = 0
  for (const [name, spec] of Object.entries(TRAIN_OPTIONS as Record<string, OptionSpec>)) {
    if (spec.methods === undefined) continue
    for (const method of TRAIN_METHODS) {
      if (spec.methods.includes(method)) continue
      const value = spec.schema.parse(undefined) ?? (spec.kind === 'string' ? 'x' : 1)
      const input = { ...base, method, [name]: value }
      const flag = '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
      t.throws(
        () => checkMethodOptions(input),
        new RegExp(`${flag} applies only to --method ${spec.methods.join(' or ')}; this run's method is ${method}`),
        `${flag} with ${method}`,
      )
      // The schema alone (what a resumed config meets) rejects it too.
      t.notOk(trainConfigSchema.safeParse(input).success, `${flag} in a ${method} config`)
      checked++
    }
  }
  t.ok(checked >= 10, `${checked} option/method pairs checked`)
  const dpo = trainConfigSchema.parse({ ...base, method: 'dpo' })
  t.notOk('epsilon' in dpo, 'a DPO config has no ε')
  t.notOk('trDpoTau' in dpo)
  const eps = trainConfigSchema.parse(base)
  t.equal(eps.method, 'epsilon-dpo', 'the default method')
  t.equal(eps.epsilon, 0.01, "its own options' defaults are filled in")
  t.notOk('betaDpoRho' in eps)
  t.same(ownOptions('tr-dpo', { epsilon: 0.1, trDpoTau: 3, beta: 1 }), { trDpoTau: 3, beta: 1 }, 'ownOptions keeps the keys the method declares')
  t.same(ownOptions('rrhf', { beta: 1, rrhfLambda: 2 }), { rrhfLambda: 2 }, 'RRHF declares no β')
  t.end()
})

t.test('LoRA: a method that cannot train adapters says why, from its spec', (t) => {
  const r = trainConfigSchema.safeParse({ model: 'm', data: ['d'], out: 'o', method: 'tr-dpo', loraR: 4 })
  t.notOk(r.success)
  t.match(JSON.stringify(r.error?.issues), /tr-dpo moves the reference toward the policy/)
  t.ok(trainConfigSchema.safeParse({ model: 'm', data: ['d'], out: 'o', method: 'dpo', loraR: 4 }).success)
  t.end()
})

t.test('a checkpoint that stored every method\u2019s defaults resumes bit-exact', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const data = writeToyPreferences(work, 32)
  const quiet = { log: () => {} }
  const config = { model, data: [data], method: 'dpo' as const, batchSize: 4, maxSteps: 4, saveEvery: 2, learningRate: 1e-3, warmupRatio: 0, maxLength: 32 }
  const full = path.join(work, 'full')
  await (await Trainer.create({ ...config, out: full }, quiet)).train()

  const cut = path.join(work, 'cut')
  const first = await Trainer.create({ ...config, out: cut }, quiet)
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 2) abort.abort()
  })
  await first.train({ signal: abort.signal })
  // As the single-table version wrote it: every method's options, at their defaults.
  const file = path.join(cut, 'checkpoint-2', 'trainer_state.json')
  const state = JSON.parse(fs.readFileSync(file, 'utf8'))
  t.notOk('epsilon' in state.config, 'this version stores only the method\u2019s own options')
  const old = {
    epsilon: 0.01,
    criterionPrecision: 'fp32',
    betaDpoAlpha: 0.6,
    betaDpoRho: 0.2,
    betaDpoMomentum: 0.9,
    trDpoMode: 'soft',
    trDpoTau: 64,
    trDpoAlpha: 0.6,
  }
  t.same(storedTrainConfig({ ...state.config, ...old }), state.config, 'the other methods\u2019 options are dropped')
  fs.writeFileSync(file, JSON.stringify({ ...state, config: { ...state.config, ...old } }))
  // The completion marker lists each file's size: the rewritten file's too.
  const marker = path.join(cut, 'checkpoint-2', COMPLETE_MARKER)
  const listed = JSON.parse(fs.readFileSync(marker, 'utf8'))
  listed.files['trainer_state.json'] = fs.statSync(file).size
  fs.writeFileSync(marker, JSON.stringify(listed))

  const resumed = await (await Trainer.create({}, { ...quiet, resume: cut })).train()
  t.equal(resumed.step, 4)
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip), 'the same metrics as the uninterrupted run')
  const stored = JSON.parse(fs.readFileSync(path.join(cut, 'checkpoint-4', 'trainer_state.json'), 'utf8'))
  t.equal(stored.beta, resumed.method.beta, 'β is the method\u2019s field of trainer_state.json')
  t.notOk('epsilon' in stored.config)
})
