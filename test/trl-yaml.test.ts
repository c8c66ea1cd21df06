// A TRL user's YAML as written: model_name_or_path / dataset_name / dataset_train_split by Hub id
// train (through a loopback Hub), and every key edpo cannot honour comes back in one message.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as zlib from 'node:zlib'

import t from 'tap'

import { parseArgs } from '../lib/cli/args'
import { TRAIN_OPTIONS } from '../lib/train/config'
import { tempDir } from './helpers/data-fixtures'
import { type FakeRepo, startFakeHub } from './helpers/fake-hub'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')

function edpo(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, [...process.execArgv, MAIN, ...args], {
      env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      ok({ code, stdout, stderr })
    })
  })
}

t.test('a TRL YAML with Hub ids trains', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  const rows = fs.readFileSync(writeToyPreferences(work, 32))
  const modelFiles: FakeRepo['files'] = {}
  for (const f of fs.readdirSync(model)) modelFiles[f] = { bytes: fs.readFileSync(path.join(model, f)), lfs: f.endsWith('.safetensors') }
  // Anthropic/hh-rlhf's layout (folders of gzipped JSONL), with toy rows the tiny tokenizer knows.
  const gz = zlib.gzipSync(rows)
  const hub = await startFakeHub({
    'edpo-test/tiny-llama': { kind: 'model', commit: 'b'.repeat(40), files: modelFiles },
    'edpo-test/hh-toy': {
      kind: 'dataset',
      commit: 'c'.repeat(40),
      files: {
        'README.md': { bytes: Buffer.from('---\nlicense: mit\n---\n') },
        'helpful-base/train.jsonl.gz': { bytes: gz },
        'helpful-base/test.jsonl.gz': { bytes: gz },
      },
    },
  })
  t.teardown(hub.close)
  const out = path.join(work, 'run')
  const yaml = path.join(work, 'dpo.yaml')
  fs.writeFileSync(
    yaml,
    [
      '# as TRL examples write it',
      'model_name_or_path: edpo-test/tiny-llama',
      'dataset_name: edpo-test/hh-toy',
      'dataset_train_split: train',
      'training_args:',
      `  output_dir: ${out}`,
      '  per_device_train_batch_size: 4',
      '  max_steps: 4',
      '  learning_rate: 1.0e-3',
      '  logging_steps: 0.5',
      '  report_to: tensorboard',
      '  torch_dtype: float32',
      '  optim: adamw_torch',
      '  attn_implementation: sdpa',
      '  remove_unused_columns: false',
      '  trust_remote_code: false',
      '',
    ].join('\n'),
  )
  const cache = path.join(work, 'hf')
  const r = await edpo(['train', '--config', yaml, '--remove-unused-columns', 'false'].slice(0, 3), { HF_ENDPOINT: hub.url, HF_HOME: cache, HF_TOKEN: '' })
  t.equal(r.code, 1, 'remove_unused_columns is answered, not silently taken')
  t.match(r.stderr, /remove_unused_columns: remove it: edpo always does this/)
  fs.writeFileSync(yaml, fs.readFileSync(yaml, 'utf8').replace('  remove_unused_columns: false\n', ''))
  const ok = await edpo(['train', '--config', yaml], { HF_ENDPOINT: hub.url, HF_HOME: cache, HF_TOKEN: '' })
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stderr, /downloading model\.safetensors/)
  t.match(ok.stderr, /split train is helpful-base\/train\.jsonl\.gz/)
  const metrics = fs
    .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss?: number })
  t.same(
    metrics.filter((m) => m.loss !== undefined).map((m) => m.step),
    [2, 4],
    'logging_steps 0.5 of 4 steps: every 2',
  )
  t.ok(
    fs.readdirSync(out).some((f) => f.startsWith('events.out.tfevents.')),
    'TensorBoard events beside metrics.jsonl',
  )
  t.ok(
    fs.existsSync(path.join(cache, 'hub', 'datasets--edpo-test--hh-toy', 'snapshots', 'c'.repeat(40), 'helpful-base', 'train.jsonl.gz')),
    'the dataset in the Python cache layout',
  )
  t.notOk(
    fs.existsSync(path.join(cache, 'hub', 'datasets--edpo-test--hh-toy', 'snapshots', 'c'.repeat(40), 'helpful-base', 'test.jsonl.gz')),
    'only the split it needs',
  )
})

t.test('ten keys edpo cannot honour: one message, one line each, with what to do', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'trl.yaml')
  fs.writeFileSync(
    file,
    [
      'model_name_or_path: m',
      'dataset_name: d',
      'output_dir: o',
      'remove_unused_columns: false',
      'dataloader_num_workers: 4',
      'tf32: true',
      'push_to_hub: true',
      'lr_scheduler_kwargs: {min_lr: 0}',
      'precompute_ref_log_probs: true',
      'rpo_alpha: 1.0',
      'use_liger_kernel: true',
      'generate_during_eval: true',
      'deepspeed: ds.json',
      '',
    ].join('\n'),
  )
  const err = (() => {
    try {
      parseArgs(['--config', file], TRAIN_OPTIONS)
    } catch (e) {
      return e as Error
    }
  })()
  const lines = err!.message.split('\n')
  t.match(lines[0], /trl\.yaml: 10 keys edpo cannot take as written:$/)
  t.equal(lines.length, 11)
  for (const [i, key] of [
    'remove_unused_columns',
    'dataloader_num_workers',
    'tf32',
    'push_to_hub',
    'lr_scheduler_kwargs',
    'precompute_ref_log_probs',
    'rpo_alpha',
    'use_liger_kernel',
    'generate_during_eval',
    'deepspeed',
  ].entries())
    t.match(lines[i + 1], new RegExp(`^  ${key}: (remove it: edpo always does this|not supported|.*--zero-stage)`), key)
  t.end()
})

t.test('TRL keys with an exact meaning map onto edpo options; trust_remote_code and other backends are refused', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'map.yaml')
  const write = (extra: string) =>
    fs.writeFileSync(
      file,
      `model:\n  model_name_or_path: m\n  torch_dtype: bfloat16\n  use_peft: true\n  lora_alpha: 16\ndataset:\n  dataset_name: d\n  dataset_config: helpful-base\n  dataset_test_split: test\ntraining_args:\n  output_dir: o\n  optim: adamw_torch_fused\n  run_name: exp1\n  report_to: none\n  ddp_timeout: 1800\n${extra}`,
    )
  write('')
  const { options } = parseArgs(['--config', file], TRAIN_OPTIONS, ['distTimeout'])
  t.same(options, {
    model: 'm',
    dtype: 'bfloat16',
    loraR: 16,
    loraAlpha: 16,
    data: ['d'],
    dataConfig: 'helpful-base',
    evalDataSplit: 'test',
    out: 'o',
    runName: 'exp1',
    reportTo: 'none',
    distTimeout: '1800',
  })
  write('  lora_r: 8\n')
  t.equal(parseArgs(['--config', file], TRAIN_OPTIONS, ['distTimeout']).options.loraR, 8, 'use_peft keeps an explicit lora_r')
  write('  trust_remote_code: true\n')
  t.throws(() => parseArgs(['--config', file], TRAIN_OPTIONS, ['distTimeout']), /trust_remote_code: refused: edpo runs no code from a model repo/)
  fs.writeFileSync(file, 'model: m\ndata: d\nout: o\nreport_to: [wandb]\n')
  t.throws(
    () => parseArgs(['--config', file], TRAIN_OPTIONS),
    /report_to: edpo writes metrics\.jsonl .*other backends are not supported\. Use tensorboard \(wandb and others can sync TensorBoard logs/,
  )
  t.end()
})
