// edpo generate: one JSON line {prompt, completion} per prompt, BOS added to raw-text prompts as
// the tokenizer's post-processor says, and every eos id of the model folder ends a completion.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { createTokenizer } from '../lib/data'
import { eosTokenIds } from '../lib/model/eos-ids'
import { writeAdapterConfig } from '../lib/model/lora'
import { tempDir, tokenizerConfig, tokenizerJson } from './helpers/data-fixtures'
import { makeTrainableModel } from './helpers/train-fixtures'

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.ts')
const edpo = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, MAIN, ...args], { encoding: 'utf8', timeout: 120_000 })

t.test('JSON lines, one per prompt, in order', (t) => {
  const model = makeTrainableModel(t)
  const r = edpo(['generate', '--model', model, '--prompt', 'how are you ?', 'hello world !', '--max-new-tokens', '5'])
  t.equal(r.status, 0, r.stderr)
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { prompt: string; completion: string })
  t.same(
    lines.map((l) => l.prompt),
    ['how are you ?', 'hello world !'],
  )
  t.ok(lines.every((l) => typeof l.completion === 'string'))
  t.end()
})

t.test('eos ids come from the tokenizer, config.json and generation_config.json', (t) => {
  const dir = tempDir(t)
  t.same(eosTokenIds(dir, 2), [2], 'no files: the tokenizer eos')
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ eos_token_id: 5 }))
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [9, 2, 7] }))
  t.same(eosTokenIds(dir, 2), [2, 5, 7, 9])
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: ['x'] }))
  t.throws(() => eosTokenIds(dir, 2), /generation_config\.json: eos_token_id must be a token id or a list of them/)
  fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id": [1,')
  t.throws(() => eosTokenIds(dir, 2), /generation_config\.json: not valid JSON/)
  t.end()
})

t.test("an adapter folder's eos ids include its base's config.json and generation_config.json", (t) => {
  const base = tempDir(t)
  fs.writeFileSync(path.join(base, 'config.json'), JSON.stringify({ eos_token_id: 5 }))
  fs.writeFileSync(path.join(base, 'generation_config.json'), JSON.stringify({ eos_token_id: [5, 8] }))
  const adapter = tempDir(t)
  writeAdapterConfig(adapter, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj'], useRslora: false, seed: 0 }, base)
  t.same(eosTokenIds(adapter, 2), [2, 5, 8], 'the base named by base_model_name_or_path')
  fs.writeFileSync(path.join(adapter, 'generation_config.json'), JSON.stringify({ eos_token_id: 11 }))
  t.same(eosTokenIds(adapter, 2), [2, 5, 8, 11], "and the adapter folder's own generation_config.json")
  fs.writeFileSync(path.join(base, 'generation_config.json'), JSON.stringify({ eos_token_id: -1 }))
  t.throws(() => eosTokenIds(adapter, 2), new RegExp(`${base}/generation_config\\.json: eos_token_id must be`), 'a bad base file is named')
  t.end()
})

t.test("raw-text prompts get the post-processor's BOS; chat prompts do not get a second one", (t) => {
  const json = tokenizerJson()
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  }
  const tk = createTokenizer(json, tokenizerConfig(), { where: 'fixture' })
  const plain = tk.encode('hello world')
  t.same(tk.encodeWithSpecialTokens!('hello world'), [1, ...plain], 'BOS first, as tokenizer(text)')
  t.notSame(plain[0], 1, 'encode() adds nothing (chat templates write their own BOS)')
  t.end()
})
