// Which files of a Hub dataset repo hold a split: the real layouts of princeton-nlp/llama3-ultrafeedback
// (data/<split>-00000-of-00001.parquet and a card with configs) and Anthropic/hh-rlhf (folders of
// <split>.jsonl.gz; its card's configs, and the older card without them), the conventions, and the
// error that lists the files seen.
import t from 'tap'

import { splitFiles } from '../lib/hub/dataset-files'

const cards = {
  ultrafeedback: `---\ndataset_info:\n  features:\n  - name: prompt\n    dtype: string\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n  - split: test\n    path: data/test-*\n---\n# llama3-ultrafeedback\n`,
  // The hh-rlhf card's configs (revision 441a767): an 'all' default and one config per folder.
  hh: `---\nconfigs:\n- config_name: all\n  default: true\n  data_files:\n  - split: train\n    path:\n    - "harmless-base/train*"\n    - "helpful-*/train*"\n  - split: test\n    path:\n    - "harmless-base/test*"\n    - "helpful-*/test*"\n- config_name: harmless-base\n  data_dir: harmless-base\n- config_name: helpful-base\n  data_dir: helpful-base\n- config_name: red-team-attempts\n  data_dir: red-team-attempts\nlicense: mit\n---\n# Dataset Card for HH-RLHF\n`,
  hhOld: `---\nlicense: mit\ntags:\n- human-feedback\n---\n# Dataset Card for HH-RLHF\n`,
}

const ULTRAFEEDBACK = ['.gitattributes', 'README.md', 'data/test-00000-of-00001.parquet', 'data/train-00000-of-00001.parquet']
const HH = ['.gitattributes', 'README.md']
for (const d of ['harmless-base', 'helpful-base', 'helpful-online', 'helpful-rejection-sampled']) HH.push(`${d}/test.jsonl.gz`, `${d}/train.jsonl.gz`)
HH.push('red-team-attempts/red_team_attempts.jsonl.gz')

const pick = (files: string[], card: string | undefined, split: string, config?: string) =>
  splitFiles({ split, config, what: '--data x/y' })(card === undefined ? files.filter((f) => f !== 'README.md') : files, async () => card ?? '')

t.test('princeton-nlp/llama3-ultrafeedback', async (t) => {
  t.same(await pick(ULTRAFEEDBACK, cards.ultrafeedback, 'train'), ['data/train-00000-of-00001.parquet'])
  t.same(await pick(ULTRAFEEDBACK, cards.ultrafeedback, 'test'), ['data/test-00000-of-00001.parquet'])
  t.same(await pick(ULTRAFEEDBACK, undefined, 'train'), ['data/train-00000-of-00001.parquet'], 'by convention without the card')
  await t.rejects(pick(ULTRAFEEDBACK, cards.ultrafeedback, 'validation'), /has no split 'validation'/)
  await t.rejects(pick(['README.md', 'data/train-00000-of-00002.parquet'], undefined, 'train'), /1 of the 2 shards of data\/train are missing/)
})

t.test('Anthropic/hh-rlhf', async (t) => {
  const helpfulAndHarmless = [
    'harmless-base/train.jsonl.gz',
    'helpful-base/train.jsonl.gz',
    'helpful-online/train.jsonl.gz',
    'helpful-rejection-sampled/train.jsonl.gz',
  ]
  t.same(await pick(HH, cards.hh, 'train'), helpfulAndHarmless, "the card's default config")
  t.same(await pick(HH, cards.hh, 'test', 'harmless-base'), ['harmless-base/test.jsonl.gz'], 'a config with data_dir')
  t.same(await pick(HH, cards.hhOld, 'train'), helpfulAndHarmless, 'the older card: every <folder>/train* file')
  t.same(await pick(HH, cards.hhOld, 'test', 'helpful-base'), ['helpful-base/test.jsonl.gz'], 'a folder as the config')
  await t.rejects(
    pick(HH, cards.hh, 'train', 'nope'),
    /no config 'nope' in the dataset card: give --data-config \(TRL: dataset_config\) one of all, harmless-base, helpful-base, red-team-attempts/,
  )
})

t.test('conventions, and the files seen when nothing fits', async (t) => {
  t.same(await pick(['train.jsonl', 'test.jsonl'], undefined, 'train'), ['train.jsonl'])
  t.same(await pick(['a.jsonl', 'b.parquet'], undefined, 'train'), ['a.jsonl', 'b.parquet'], 'no split names: all of it is train')
  t.same(await pick(['dev.json', 'train.json'], undefined, 'validation'), ['dev.json'])
  await t.rejects(pick(['train.jsonl', 'notes.txt'], undefined, 'test'), /found no files for split 'test'; files seen: train\.jsonl, notes\.txt/)
})
