// The demo's parts that a reader should be able to check by hand: the gold reward, the labelling
// of sampled pairs, the synthetic task, and loading a judge module (CommonJS or ESM).
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { ascending, overlap, promptDigits, reward } from '../lib/demo/gold-reward'
import { labelPairs } from '../lib/demo/labelling'
import { bubblePasses, demonstrations, makePrompts } from '../lib/demo/task'
import { loadGoldJudge, scoreSamples } from '../lib/eval/gold'
import { EdpoInputError } from '../lib/index'
import { tempDir } from './helpers/data-fixtures'

const close = (t: { ok(v: boolean, m: string): unknown }, got: number, want: number, what: string) =>
  t.ok(Math.abs(got - want) < 1e-12, `${what}: ${got} vs ${want}`)

t.test('gold reward: worked examples', (t) => {
  t.equal(promptDigits('4719='), '4719')
  close(t, reward('4719=', '1479'), 1, 'the sorted digits are perfect')
  // A copy: all digits, pairs 4→7 up, 7→1 down, 1→9 up: ascending 2/3 → 0.25 + 0.75·2/3 = 0.75.
  close(t, reward('4719=', '4719'), 0.75, 'a plain copy')
  // Sorted but wrong digits: only '1' is from the prompt; overlap 1/4 · 1.
  close(t, reward('4719=', '0123'), 0.25, 'gaming "ascending" with other digits')
  // One digit missing: overlap 3/4, ascending 1, length error 1 → 0.75 − 0.5/4.
  close(t, reward('4719=', '147'), 0.75 - 0.125, 'a digit dropped')
  // One extra: overlap 1, ascending 1, length error 1.
  close(t, reward('4719=', '14799'), 1 - 0.125, 'a digit doubled')
  // A non-digit breaks its two pairs and matches nothing.
  close(t, reward('4719=', '14x9'), 0.75 * (0.25 + 0.75 / 3), 'a letter inside')
  close(t, reward('4719=', ''), -0.5, 'the empty answer')
  t.ok(reward('4719=', '1479') > reward('4719=', '1749'), 'more sorted is better')
  close(t, overlap('1123', '1113'), 0.75, 'a repeated digit matches as often as the target has it')
  close(t, ascending('1'), 1, 'one digit is ascending')
  close(t, ascending('x'), 0, 'one non-digit is not')
  t.end()
})

t.test('labelling: the higher reward is chosen, ties and empty completions are dropped', (t) => {
  const prompts = ['4719=', '4719=', '321=', '55=']
  const a = ['1479', '4719', '123', '']
  const b = ['4719', '1479', '123', '55']
  const ra = a.map((x, i) => reward(prompts[i]!, x))
  const rb = b.map((x, i) => reward(prompts[i]!, x))
  const r = labelPairs(prompts, a, b, ra, rb)
  t.equal(r.ties, 1)
  t.equal(r.empty, 1)
  t.same(
    r.pairs.map((p) => [p.chosen, p.rejected]),
    [
      ['1479', '4719'],
      ['1479', '4719'],
    ],
    'order of a and b does not matter',
  )
  t.ok(r.pairs.every((p) => p.chosenReward > p.rejectedReward))
  t.end()
})

t.test('task: seeded prompts, bubble passes and imperfect demonstrations', (t) => {
  const p = makePrompts(200, 7)
  t.same(p, makePrompts(200, 7), 'the same seed gives the same prompts')
  t.notSame(p, makePrompts(200, 8))
  t.ok(
    p.every((x) => /^\d{4,6}=$/.test(x)),
    'four to six digits and =',
  )
  t.equal(bubblePasses('4719', 0), '4719')
  t.equal(bubblePasses('4719', 1), '4179')
  t.equal(bubblePasses('4719', 3), '1479')
  const demos = demonstrations(p, 3)
  t.same(demos, demonstrations(p, 3))
  const rewards = demos.map((d) => reward(d.prompt, d.completion))
  const perfect = rewards.filter((r) => r === 1).length
  // Demonstrations vary in quality: some perfect, many not (that is what preferences can fix).
  t.ok(perfect > 20 && perfect < 160, `${perfect} of 200 perfect`)
  t.ok(
    rewards.some((r) => r < 0.75),
    'some are worse than a copy',
  )
  t.end()
})

t.test('judge modules: CommonJS, ESM default export, and readable errors', async (t) => {
  const dir = tempDir(t)
  const cjs = path.join(dir, 'judge.js')
  fs.writeFileSync(cjs, 'exports.reward = (prompt, completion) => completion.length - prompt.length\n')
  const esm = path.join(dir, 'judge.mjs')
  fs.writeFileSync(esm, 'export default function (prompt, completion) { return completion === prompt ? 1 : 0 }\n')
  const none = path.join(dir, 'none.js')
  fs.writeFileSync(none, 'exports.score = () => 1\n')
  const nan = path.join(dir, 'nan.js')
  fs.writeFileSync(nan, 'exports.reward = () => NaN\n')
  const sample = (prompt: string, text: string) => ({ prompt, text, promptIds: new Int32Array(), completionIds: new Int32Array() })
  t.same(await scoreSamples(await loadGoldJudge(cjs), [sample('ab', 'abcd')]), [2])
  t.same(await scoreSamples(await loadGoldJudge(esm), [sample('x', 'x'), sample('x', 'y')]), [1, 0])
  await t.rejects(loadGoldJudge(none), /expected the module to export reward\(prompt, completion\)/)
  await t.rejects(loadGoldJudge(path.join(dir, 'missing.js')), EdpoInputError)
  await t.rejects(scoreSamples(await loadGoldJudge(nan), [sample('p', 'q')]), /returned NaN, expected a finite number/)
})
