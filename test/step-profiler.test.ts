// --profile-steps: the range parser, the op totals (self time, device busy time) on hand-made
// events, and real runs of ε-DPO and SFT whose profile holds every section of the step and the ATen
// ops of the worker threads that run the forwards and the backward.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { EdpoInputError } from '../lib/index'
import type { NativeProfile } from '../lib/core/native'
import { opTotals, parseStepRange } from '../lib/train/step-profiler'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

t.test('parseStepRange: A or A-B with 1 <= A <= B', (t) => {
  t.same(parseStepRange('3'), { first: 3, last: 3 })
  t.same(parseStepRange('2-5'), { first: 2, last: 5 })
  for (const bad of ['', '0', '0-2', '3-2', '-1', '2-', 'a', '1.5', '2-3-4', ' 2', '99999999999999999999'])
    t.equal(parseStepRange(bad), undefined, JSON.stringify(bad))
  t.end()
})

t.test('opTotals: self time nests per thread, device busy time is the union of intervals', (t) => {
  const ev = (rows: [string, number, number, number, number][]): NativeProfile => ({
    names: rows.map((r) => r[0]),
    onDevice: Uint8Array.from(rows.map((r) => r[1])),
    startUs: Float64Array.from(rows.map((r) => r[2])),
    durationUs: Float64Array.from(rows.map((r) => r[3])),
    thread: Float64Array.from(rows.map((r) => r[4])),
  })
  const totals = opTotals(
    ev([
      // thread 1: linear [0, 100) holds matmul [10, 90), which holds mm [20, 80)
      ['aten::linear', 0, 0, 100, 1],
      ['aten::matmul', 0, 10, 80, 1],
      ['aten::mm', 0, 20, 60, 1],
      // after them on thread 1, and one on thread 2 overlapping in time (not nested: another thread)
      ['aten::add', 0, 100, 5, 1],
      ['aten::mm', 0, 30, 40, 2],
      // device: two overlapping kernels and one apart: busy = [0, 30) ∪ [50, 60) = 40
      ['gemm', 1, 0, 20, 0],
      ['gemm', 1, 10, 20, 0],
      ['softmax', 1, 50, 10, 0],
    ]),
  )
  const host = Object.fromEntries(totals.host.map((o) => [o.name, [o.calls, o.us]]))
  t.same(host, { 'aten::linear': [1, 20], 'aten::matmul': [1, 20], 'aten::mm': [2, 100], 'aten::add': [1, 5] })
  t.equal(totals.host[0]!.name, 'aten::mm', 'sorted by self time')
  t.same(
    totals.device.map((o) => [o.name, o.calls, o.us]),
    [
      ['gemm', 2, 40],
      ['softmax', 1, 10],
    ],
  )
  t.equal(totals.deviceBusyUs, 40)
  t.end()
})

const base = { batchSize: 2, gradAccumulation: 2, logEvery: 1000, maxLength: 32 }

function readProfile(dir: string): {
  sections: { step: number; sections: [string, number][] }[]
  trace: { name: string; tid: number; pid: number }[]
  summary: string
} {
  const sections = JSON.parse(fs.readFileSync(path.join(dir, 'sections.json'), 'utf8')) as { steps: { step: number; sections: [string, number][] }[] }
  const trace = (
    JSON.parse(fs.readFileSync(path.join(dir, 'trace.json'), 'utf8')) as { traceEvents: { name: string; tid: number; pid: number; ph: string }[] }
  ).traceEvents.filter((e) => e.ph === 'X')
  return { sections: sections.steps, trace, summary: fs.readFileSync(path.join(dir, 'summary.md'), 'utf8') }
}

t.test('ε-DPO: steps 2-3 profiled, every section timed, worker-thread ops in the trace', async (t) => {
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const trainer = await Trainer.create(
    { ...base, maxSteps: 4, profileSteps: '2-3', model: makeTrainableModel(t), data: [writeToyPreferences(work, 40)], out },
    { log: () => {} },
  )
  const written: string[] = []
  const stepTimes = new Map<number, number>()
  trainer.on('profile', (f) => written.push(f))
  trainer.on('step', (s) => stepTimes.set(s.step, (s.metrics as Record<string, number>).step_time! * 1000))
  await trainer.train()
  const dir = path.join(out, 'profile', 'steps-2-3')
  t.same(written, [path.join(dir, 'summary.md')], 'one profile, announced once')
  const p = readProfile(dir)
  t.same(
    p.sections.map((s) => s.step),
    [2, 3],
  )
  for (const s of p.sections) {
    t.same(
      s.sections.map(([n]) => n),
      [
        'batch',
        'policy forward',
        'reference forward',
        'loss',
        'backward',
        'gradient sync',
        'read stats',
        'clip',
        'optimizer',
        'zero grad',
        'trim heap',
        'rest of the step',
      ],
      `step ${s.step}: the sections in order (2 micro-batches add up)`,
    )
    const sum = s.sections.reduce((a, [, ms]) => a + ms, 0)
    const wall = stepTimes.get(s.step)!
    // The sections run from the step's start to just after its step_time was taken.
    t.ok(sum >= 0.95 * wall && sum <= wall + 50, `step ${s.step}: sections sum to ${sum.toFixed(2)} ms, step_time ${wall.toFixed(2)} ms`)
  }
  const names = new Set(p.trace.map((e) => e.name))
  // The forwards and the backward run on the thread pool: their ops are there only because the
  // workers carry the profiler's state.
  for (const op of ['aten::embedding', 'aten::mm']) t.ok(names.has(op), `${op} recorded`)
  t.ok(new Set(p.trace.map((e) => e.tid)).size >= 2, 'ops of more than one host thread')
  // The addon's declared ops are scopes of their own (js_op_binding.cc): two forwards per micro-batch.
  const count = (name: string) => p.trace.filter((e) => e.name === name).length
  t.equal(count('modelForward'), 2 * 2 * 2, 'modelForward: policy and reference, 2 micro-batches, 2 steps')
  t.equal(count('epsilonDpoLossFromHidden'), 2 * 2, 'the loss op once per micro-batch')
  t.equal(count('adamwStep'), 2, 'AdamW once per step')
  t.match(p.summary, /## Sections/)
  t.match(p.summary, /\| \*\*step\*\* \|/)
  t.match(p.summary, /## Host self time by op/)
  t.notOk(fs.existsSync(path.join(out, 'profile', 'step-4')), 'nothing after the range')
})

t.test('SFT: a range past the run ends with the run, and is written', async (t) => {
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const data = writeJsonl(
    path.join(work, 'sft.jsonl'),
    Array.from({ length: 20 }, (_, i) => ({ prompt: 'how are you ?', completion: i % 2 ? 'i am good .' : 'good , thanks !' })),
  )
  const trainer = await SftTrainer.create({ ...base, maxSteps: 2, profileSteps: '2-9', model: makeTrainableModel(t), data: [data], out }, { log: () => {} })
  await trainer.train()
  const p = readProfile(path.join(out, 'profile', 'step-2'))
  t.same(
    p.sections.map((s) => s.step),
    [2],
  )
  t.same(p.sections[0]!.sections.map(([n]) => n).slice(0, 3), ['batch', 'forward', 'loss'])
})

t.test('--profile-steps outside the run: said once, nothing written', async (t) => {
  const work = tempDir(t)
  const out = path.join(work, 'run')
  const lines: string[] = []
  const trainer = await Trainer.create(
    { ...base, maxSteps: 2, profileSteps: '5-6', model: makeTrainableModel(t), data: [writeToyPreferences(work, 8)], out },
    { log: (l: string) => lines.push(l) },
  )
  await trainer.train()
  t.equal(lines.filter((l) => /--profile-steps 5-6 lies outside this run's steps 1-2/.test(l)).length, 1)
  t.notOk(fs.existsSync(path.join(out, 'profile')), 'no profile folder')
})

t.test('--profile-steps: a bad range names the option', async (t) => {
  const work = tempDir(t)
  for (const bad of ['3-2', '0', 'all']) {
    const error = await Trainer.create(
      { ...base, maxSteps: 2, profileSteps: bad, model: makeTrainableModel(t), data: [writeToyPreferences(work, 8)], out: path.join(work, 'run') },
      { log: () => {} },
    ).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(error instanceof EdpoInputError, `${bad}: an input error`)
    t.match((error as Error).message, /profileSteps: expected a step or a range of optimizer steps, 'A' or 'A-B'/, bad)
  }
})
