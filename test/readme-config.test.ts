// The README's config file is one edpo accepts as written: every key is known (edpo's or TRL's
// name) and the values pass the option table's schema.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { parseArgs } from '../lib/cli/args'
import { parseModelConfig } from '../lib/model'
import { planMemory } from '../lib/model/memory-plan'
import { TRAIN_OPTIONS, trainConfigSchema } from '../lib/train/config'
import { LLAMA3_8B } from '../bench/llama3-8b'

t.test("README's run.yaml parses into a valid train config", (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Train your model'))
  const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1]
  t.ok(yaml, 'found the YAML example')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-readme-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'run.yaml')
  fs.writeFileSync(file, yaml!)
  const parsed = parseArgs(['--config', file], TRAIN_OPTIONS)
  const config = trainConfigSchema.parse(parsed.options)
  t.equal(config.gradAccumulation * config.batchSize, 128, 'the paper batch of 128 pairs per step')
  t.equal(config.dtype, 'bfloat16')
  t.end()
})

t.test("docs/distributed.md's paper.yaml is the paper's run and fits a 40 GB card at ZeRO-3", (t) => {
  const doc = fs.readFileSync(path.join(__dirname, '..', 'docs', 'distributed.md'), 'utf8')
  const section = doc.slice(doc.indexOf("## The paper's run"))
  const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1]
  t.ok(yaml, 'found the YAML')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-paper-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'paper.yaml')
  fs.writeFileSync(file, yaml!)
  const c = trainConfigSchema.parse(parseArgs(['--config', file], TRAIN_OPTIONS).options)
  // Table 4 of the paper (Llama-3-Instruct) on its 16 GPUs.
  const GPUS = 16
  t.equal(c.batchSize * c.gradAccumulation * GPUS, 128, '128 pairs per step on 16 GPUs')
  t.same(
    [c.method, c.beta, c.epsilon, c.learningRate, c.lrScheduler, c.warmupRatio, c.weightDecay, c.epochs],
    ['epsilon-dpo', 0.01, 0.01, 1e-6, 'cosine', 0.1, 0, 1],
  )
  t.equal(c.zeroStage, 3)
  t.equal(c.shardReference, true)
  t.equal(c.dtype, 'bfloat16')
  // The command's plan (the same options): a 40 GB card holds 37.25 GiB.
  // The command's lines, joined at their trailing backslashes.
  const lines = section.slice(section.indexOf('edpo plan ')).split('\n')
  const end = lines.findIndex((l) => !l.endsWith('\\'))
  const command = lines
    .slice(0, end + 1)
    .map((l) => l.replace(/\\$/, ''))
    .join(' ')
  const flag = (name: string) => new RegExp(`--${name} (\\S+)`).exec(command)?.[1]
  t.equal(Number(flag('batch-size')), c.batchSize, 'the plan command has the config’s batch')
  t.equal(Number(flag('max-length')), c.maxLength, 'and its lengths')
  t.equal(Number(flag('max-prompt-length')), c.maxPromptLength)
  t.equal(Number(flag('nproc-per-node')), GPUS)
  const plan = planMemory(parseModelConfig(LLAMA3_8B, 'config.json'), {
    dtype: 'bfloat16',
    device: 'cuda',
    batchSize: c.batchSize,
    maxLength: c.maxLength,
    maxPromptLength: c.maxPromptLength,
    data: 'pairs',
    reference: true,
    headGradientInForward: true,
    gradientCheckpointing: c.gradientCheckpointing,
    chunkTokens: 0,
    nprocPerNode: GPUS,
    zeroStage: 3,
    gradAccumulation: c.gradAccumulation,
  })
  t.ok(plan.total <= 37 * 2 ** 30, `the plan fits: ${(plan.total / 2 ** 30).toFixed(2)} GiB per GPU`)
  t.end()
})
