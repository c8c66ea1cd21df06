// CLI flags and config files derive from the option table; flags override the file; errors name
// the flag or the file.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import t from 'tap'

import { formatHelp, parseArgs } from '../lib/cli/args'
import { TRAIN_METHODS, TRAIN_OPTIONS, trainConfigSchema } from '../lib/train/config'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edpo-cli-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

t.test('flags map to options with their types', (t) => {
  const a = parseArgs(
    [
      '--model',
      'm',
      '--data',
      'a.jsonl',
      '--data=b/*.parquet',
      '--out',
      'runs/x',
      '--beta',
      '0.05',
      '--gradient-checkpointing',
      '--no-skip-invalid',
      '--max-steps',
      '10',
    ],
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
  t.throws(() => parseArgs(['--config', path.join(dir, 'bad.yaml')], TRAIN_OPTIONS), /bad.yaml: modle: unknown option/)
  fs.writeFileSync(path.join(dir, 'broken.json'), '{"model": ')
  t.throws(() => parseArgs(['--config', path.join(dir, 'broken.json')], TRAIN_OPTIONS), /broken.json: not valid JSON/)
  t.end()
})

t.test('bad flags are named', (t) => {
  t.throws(() => parseArgs(['--bta', '1'], TRAIN_OPTIONS), /--bta: unknown option \(see --help\)/)
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

t.test('list options take every value up to the next flag; stray arguments are errors', (t) => {
  const base = ['--model', 'm', '--out', 'o']
  t.same(
    parseArgs([...base, '--data', 'a.jsonl', 'b.jsonl', 'c.parquet', '--beta', '0.2'], TRAIN_OPTIONS).options.data,
    ['a.jsonl', 'b.jsonl', 'c.parquet'],
    'a shell-expanded glob',
  )
  t.same(parseArgs([...base, '--data', 'a.jsonl', '--data', 'b.jsonl'], TRAIN_OPTIONS).options.data, ['a.jsonl', 'b.jsonl'], 'repeated')
  t.throws(() => parseArgs([...base, '--beta', '0.2', 'oops', '--data', 'a'], TRAIN_OPTIONS), /unexpected argument 'oops' after 0.2: options are --flags/)
  t.throws(() => parseArgs(['stray'], TRAIN_OPTIONS), /unexpected argument 'stray'/)
  t.end()
})

t.test('required options name the flag and say what it is', (t) => {
  t.throws(() => parseArgs(['--data', 'a', '--out', 'o'], TRAIN_OPTIONS), /--model is required \(Hugging Face model folder/)
  t.throws(() => parseArgs(['--model', 'm', '--data', 'a'], TRAIN_OPTIONS), /--out is required/)
  t.same(parseArgs(['--resume', 'runs/x'], TRAIN_OPTIONS, ['resume']).options, { resume: 'runs/x' }, '--resume needs nothing else')
  t.equal(parseArgs(['--help'], TRAIN_OPTIONS).help, true, '--help needs nothing else')
  t.end()
})

t.test("TRL's names: every alias as a flag and as a config key gives the same option", (t) => {
  const base = { model: 'm', data: ['d'], out: 'o' }
  for (const [name, spec] of Object.entries(TRAIN_OPTIONS) as [string, { aliases?: readonly string[]; kind: string }][]) {
    for (const alias of spec.aliases ?? []) {
      const choice: Record<string, string> = { lrScheduler: 'linear', reportTo: 'tensorboard', data: 'd' }
      const value = spec.kind === 'string' || spec.kind === 'strings' ? (choice[name] ?? 'x') : spec.kind === 'number' ? 0.5 : 3
      const expected = spec.kind === 'strings' ? [value] : value
      // dataset_name is --data itself: given instead of it, not beside it.
      const given = name === 'data' ? ['--model', 'm', '--out', 'o'] : ['--model', 'm', '--data', 'd', '--out', 'o']
      const flag = parseArgs([...given, `--${alias.replace(/_/g, '-')}`, String(value)], TRAIN_OPTIONS)
      const file = path.join(dir, `alias-${alias}.yaml`)
      fs.writeFileSync(file, `model: m\n${name === 'data' ? '' : 'data: d\n'}out: o\n${alias}: ${value}\n`)
      const fromFile = parseArgs(['--config', file], TRAIN_OPTIONS)
      t.same(flag.options, { ...base, [name]: expected }, `--${alias.replace(/_/g, '-')} → ${name}`)
      t.same(fromFile.options, { ...base, [name]: expected }, `${alias}: in a config file → ${name}`)
    }
  }
  const trl = path.join(dir, 'trl.yaml')
  fs.writeFileSync(
    trl,
    'model_name_or_path: m\noutput_dir: o\ndata: d\nbf16: true\nloss_type: sigmoid\nper_device_train_batch_size: 4\ngradient_checkpointing: true\n',
  )
  t.same(parseArgs(['--config', trl], TRAIN_OPTIONS).options, { ...base, dtype: 'bfloat16', batchSize: 4, gradientCheckpointing: true }, 'a TRL config file')
  t.same(parseArgs(['--model', 'm', '--data', 'd', '--out', 'o', '--bf16'], TRAIN_OPTIONS).options.dtype, 'bfloat16', '--bf16')
  t.equal(trainConfigSchema.parse({ ...base, dtype: 'bf16' }).dtype, 'bfloat16', '--dtype bf16')
  t.equal(trainConfigSchema.parse({ ...base, dtype: 'fp16' }).dtype, 'float16', '--dtype fp16')
  fs.writeFileSync(trl, 'model: m\ndata: d\nout: o\nloss_type: ipo\n')
  t.throws(
    () => parseArgs(['--config', trl], TRAIN_OPTIONS),
    /trl.yaml: loss_type: edpo trains the sigmoid \(DPO\) loss only, got "ipo"; did you mean --method/,
  )
  fs.writeFileSync(trl, 'model: m\ndata: d\nout: o\nwarmup_steps: 100\n')
  t.throws(
    () => parseArgs(['--config', trl], TRAIN_OPTIONS),
    /trl.yaml: warmup_steps: unknown option; did you mean --warmup-ratio \(TRL: warmup_steps counts steps/,
  )
  t.end()
})

t.test('value errors name what the user typed, never the internal camelCase path', (t) => {
  t.throws(
    () => parseArgs(['--model', 'm', '--data', 'd', '--out', 'o', '--per-device-train-batch-size', '2.5'], TRAIN_OPTIONS),
    /^--per-device-train-batch-size: .*\(got 2.5\)/,
  )
  const file = path.join(dir, 'badvalue.yaml')
  fs.writeFileSync(file, 'model: m\ndata: d\nout: o\nmethod: ppo\n')
  t.throws(() => parseArgs(['--config', file], TRAIN_OPTIONS), /badvalue.yaml: method: .*"ppo"/)
  t.end()
})

t.test('--help shows enum choices, TRL names, required options and --resume', (t) => {
  const help = formatHelp('edpo train [options]', 'Train.', TRAIN_OPTIONS, [['--resume <run dir>', 'continue']])
  // Every method of the registry, the comparison set included.
  t.match(help, `--method <${TRAIN_METHODS.join('|')}>`)
  for (const m of ['epsilon-dpo', 'dpo', 'tr-dpo', 'beta-dpo', 'ipo', 'simpo', 'cpo', 'orpo', 'r-dpo', 'slic-hf', 'hinge', 'rrhf', 'kto'])
    t.ok(TRAIN_METHODS.includes(m as never), `--method ${m}`)
  t.match(help, /--dtype <float32\|bfloat16\|float16\|float64>/)
  t.match(help, /--batch-size <value> .*\[TRL: per_device_train_batch_size\]/)
  t.match(help, /--model <value> .*\(required\)/)
  t.match(help, /--resume <run dir> +continue/)
  t.end()
})

t.test('edpo demo --methods takes every method listed', async (t) => {
  const { DEMO_OPTIONS } = await import('../lib/demo/config')
  t.same(parseArgs(['--methods', 'dpo', 'epsilon-dpo', '--quick'], DEMO_OPTIONS).options, { methods: ['dpo', 'epsilon-dpo'], quick: true })
})

t.test("inherited names are not options: '--to-string', 'constructor:' and '__proto__:' are unknown", (t) => {
  const base = ['--model', 'm', '--data', 'd', '--out', 'o']
  t.throws(() => parseArgs([...base, '--to-string', 'x'], TRAIN_OPTIONS), /^--to-string: unknown option \(see --help\)$/)
  for (const key of ['constructor', '__proto__', 'has_own_property']) {
    const file = path.join(dir, `proto-${key}.yaml`)
    fs.writeFileSync(file, `model: m\ndata: d\nout: o\n${key}: 1\n`)
    t.throws(() => parseArgs(['--config', file], TRAIN_OPTIONS), new RegExp(`${key}: unknown option \\(see --help\\)$`), key)
  }
  t.end()
})
