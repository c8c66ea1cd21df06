// The README's config file is one edpo accepts as written: every key is known (edpo's or TRL's
// name) and the values pass the option table's schema.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { parseArgs } from '../lib/cli/args'
import { TRAIN_OPTIONS, trainConfigSchema } from '../lib/train/config'

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
