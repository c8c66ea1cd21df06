// Tokenizer loading and TRL's tokenization rules: separate prompt/completion encoding without
// added special tokens, EOS appended once, and the three truncation limits, on worked examples.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { EdpoInputError, data } from '../lib/index'
import { id, ids, makeModelDir, tokenizerConfig, tokenizerJson } from './helpers/data-fixtures'

const text = (prompt: string, chosen: string, rejected: string) => ({ kind: 'text' as const, prompt, chosen, rejected })

t.test('loads tokenizer.json + tokenizer_config.json: special ids, encoding without added specials', (t) => {
  const tok = data.loadTokenizer(makeModelDir(t))
  t.equal(tok.eosTokenId, id('</s>'))
  t.equal(tok.bosTokenId, id('<s>'))
  t.equal(tok.padTokenId, id('<pad>'))
  t.same(tok.encode('hello world ?'), ids('hello world ?'), 'no BOS added')
  t.same(tok.encode('<s><|user|>\nhello'), ids('<s> <|user|> hello'), 'special tokens in the text are kept')
  t.same(tok.encode('hello zzz'), [id('hello'), id('[UNK]')], "unknown words map to the model's unk_token")
  t.equal(tok.decode(ids('hello world')), 'hello world')
  t.end()
})

t.test('tokenizer errors name the file and the key', (t) => {
  const noPad = data.createTokenizer(tokenizerJson(), tokenizerConfig({ pad_token: undefined }))
  t.equal(noPad.padTokenId, id('</s>'), 'pad falls back to EOS')
  t.throws(
    () => data.createTokenizer(tokenizerJson(), tokenizerConfig({ eos_token: undefined }), { where: 'm' }),
    new EdpoInputError('m: tokenizer_config.json: eos_token is missing (needed to end completions)'),
  )
  t.throws(
    () => data.createTokenizer(tokenizerJson(), tokenizerConfig({ eos_token: '<eos>' }), { where: 'm' }),
    new EdpoInputError("m: tokenizer_config.json: eos_token '<eos>' is not in the vocabulary"),
  )
  const dir = makeModelDir(t)
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{ nope')
  t.throws(() => data.loadTokenizer(dir), { name: 'EdpoInputError', message: new RegExp(`^${path.join(dir, 'tokenizer.json')}: not valid JSON`) })
  fs.rmSync(path.join(dir, 'tokenizer.json'))
  t.throws(() => data.loadTokenizer(dir), new EdpoInputError(`${path.join(dir, 'tokenizer.json')}: no such file`))
  t.end()
})

t.test('a byte-level BPE tokenizer.json works through @huggingface/tokenizers', (t) => {
  // GPT-2's byte→unicode table, then a few merges.
  const bytes: number[] = []
  for (let b = 33; b <= 126; b++) bytes.push(b)
  for (let b = 161; b <= 172; b++) bytes.push(b)
  for (let b = 174; b <= 255; b++) bytes.push(b)
  const chars = bytes.slice()
  for (let b = 0, n = 0; b < 256; b++)
    if (!bytes.includes(b)) {
      bytes.push(b)
      chars.push(256 + n++)
    }
  const vocab: Record<string, number> = { '<pad>': 0, '<s>': 1, '</s>': 2 }
  chars.forEach((c, i) => {
    vocab[String.fromCharCode(c)] = i + 3
  })
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w']
  for (const m of merges) vocab[m.replace(' ', '')] = Object.keys(vocab).length
  const special = (i: number, content: string) => ({ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  const json = {
    version: '1.0',
    added_tokens: [special(0, '<pad>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  }
  const tok = data.createTokenizer(json, { bos_token: '<s>', eos_token: '</s>' })
  const got = tok.encode('hello world é</s>')
  t.same(got.slice(0, 2), [vocab.hello, vocab.Ġw], 'merges apply')
  t.equal(got.length, 10, 'hello Ġw o r l d Ġ Ã © </s>')
  t.equal(got[got.length - 1], 2)
  t.equal(tok.decode(got), 'hello world é</s>', 'round trip, UTF-8 bytes included')
  t.end()
})

t.test('EOS is appended to completions unless they already end with it', (t) => {
  const tok = data.loadTokenizer(makeModelDir(t))
  const r = data.tokenizePair(text('how are you ?', 'fine', 'bad </s>'), 'f:1', tok)
  t.same(r.pair && [Array.from(r.pair.prompt), Array.from(r.pair.chosen), Array.from(r.pair.rejected)], [
    ids('how are you ?'),
    ids('fine </s>'),
    ids('bad </s>'),
  ])
  t.equal(r.pair?.source, 'f:1')
  t.end()
})

t.test('a chat-rendered pair tokenizes to prompt / completion ids (worked example)', (t) => {
  const tok = data.loadTokenizer(makeModelDir(t))
  const rendered = data.applyChatTemplate(
    tok.chatTemplate!,
    data.normalizeRow({ prompt: [{ role: 'user', content: 'how are you ?' }], chosen: 'fine thanks', rejected: 'bad' }),
  )
  const r = data.tokenizePair(rendered, 'f:1', tok)
  t.same(Array.from(r.pair!.prompt), ids('<s> <|user|> how are you ? <|end|> <|assistant|>'))
  t.same(Array.from(r.pair!.chosen), ids('fine thanks <|end|> </s>'))
  t.same(Array.from(r.pair!.rejected), ids('bad <|end|> </s>'))
  t.end()
})

t.test('truncation, TRL-compatible: the prompt keeps its end, the row keeps its start', (t) => {
  const tok = data.loadTokenizer(makeModelDir(t))
  const pair = text('the cat sat , the dog ran .', 'i am fine', 'bad') // prompt 8, chosen 3+EOS, rejected 1+EOS
  const run = (opts: data.TruncationOptions) => {
    const r = data.tokenizePair(pair, 'f:1', tok, opts)
    if (r.pair === undefined) return 'dropped'
    return { prompt: Array.from(r.pair.prompt), chosen: Array.from(r.pair.chosen), rejected: Array.from(r.pair.rejected), truncated: r.truncated }
  }
  t.same(run({}), { prompt: ids('the cat sat , the dog ran .'), chosen: ids('i am fine </s>'), rejected: ids('bad </s>'), truncated: false })
  t.same(
    run({ maxLength: 12, maxPromptLength: 8 }),
    { prompt: ids('the cat sat , the dog ran .'), chosen: ids('i am fine </s>'), rejected: ids('bad </s>'), truncated: false },
    'exactly at the limits',
  )
  t.same(
    run({ maxPromptLength: 3 }),
    { prompt: ids('dog ran .'), chosen: ids('i am fine </s>'), rejected: ids('bad </s>'), truncated: true },
    'prompt keeps its end',
  )
  t.same(
    run({ maxLength: 10 }),
    { prompt: ids('the cat sat , the dog ran .'), chosen: ids('i am'), rejected: ids('bad </s>'), truncated: true },
    'row keeps its start; EOS is cut too',
  )
  t.same(
    run({ maxPromptLength: 4, maxLength: 6 }),
    { prompt: ids('the dog ran .'), chosen: ids('i am'), rejected: ids('bad </s>'), truncated: true },
    'prompt first, then the row',
  )
  t.same(
    run({ maxCompletionLength: 2 }),
    { prompt: ids('the cat sat , the dog ran .'), chosen: ids('i am'), rejected: ids('bad </s>'), truncated: true },
    'completion keeps its start',
  )
  t.equal(run({ maxLength: 8 }), 'dropped', 'the prompt alone fills maxLength')
  t.equal(run({ maxLength: 5 }), 'dropped')
  t.same(
    run({ maxLength: 9 }),
    { prompt: ids('the cat sat , the dog ran .'), chosen: ids('i'), rejected: ids('bad'), truncated: true },
    'one completion token left',
  )
  t.end()
})
