// CLI flags and config files derive from the option table; flags override the file; errors name
// the flag or the file.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { formatHelp, parseArgs } from '../lib/cli/args'
import { TRAIN_OPTIONS, trainConfigSchema } from '../lib/train/config'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-cli-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('flags map to options with their types', (t) => {
  const a = parseArgs(
    ['--model', 'm', '--data', 'a.jsonl', '--data=b/*.parquet', '--out', 'runs/x', '--beta', '0.05', '--gradient-checkpointing', '--no-skip-invalid', '--max-steps', '10'],
    TRAIN_OPTIONS,
  )
  t.same(a.options, {
    model: 'm',
    data: ['a.jsonl', 'b/*.parquet'],
    out: 'runs/x',
    beta: 0.05,
    gradientCheckpointing: true,
    skipInvalid: false,
    maxSteps: 10,
  })
  const config = trainConfigSchema.parse(a.options)
  t.equal(config.epsilon, 0.01, 'defaults fill the rest')
  t.end()
})

t.test('a YAML config file, overridden by flags', (t) => {
  const file = path.join(dir, 'run.yaml')
  fs.writeFileSync(file, 'model: ./Llama\ndata: prefs.jsonl\nout: runs/a\nlearning_rate: 1.0e-6\nmethod: dpo\n')
  const a = parseArgs(['--config', file, '--method', 'epsilon-dpo'], TRAIN_OPTIONS)
  t.same(a.options, { model: './Llama', data: ['prefs.jsonl'], out: 'runs/a', learningRate: 1e-6, method: 'epsilon-dpo' })
  fs.writeFileSync(path.join(dir, 'bad.yaml'), 'modle: x\n')
  t.throws(() => parseArgs(['--config', path.join(dir, 'bad.yaml')], TRAIN_OPTIONS), /bad.yaml: unknown option 'modle'/)
  fs.writeFileSync(path.join(dir, 'broken.json'), '{"model": ')
  t.throws(() => parseArgs(['--config', path.join(dir, 'broken.json')], TRAIN_OPTIONS), /broken.json: not valid JSON/)
  t.end()
})

t.test('bad flags are named', (t) => {
  t.throws(() => parseArgs(['--bta', '1'], TRAIN_OPTIONS), /--bta: unknown flag/)
  t.throws(() => parseArgs(['--beta', 'high'], TRAIN_OPTIONS), /--beta: expected a number, got 'high'/)
  t.throws(() => parseArgs(['--beta'], TRAIN_OPTIONS), /--beta: missing value/)
  t.end()
})

t.test('--help lists every option with its default', (t) => {
  const help = formatHelp('edpo train [options]', 'Train.', TRAIN_OPTIONS)
  for (const name of Object.keys(TRAIN_OPTIONS)) {
    const flag = '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
    t.ok(help.includes(flag), flag)
  }
  t.match(help, /--epsilon <value> +ε-DPO perturbation size ε \(epsilon-dpo only\) \(default 0.01\)/)
  t.end()
})
