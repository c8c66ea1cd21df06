// The paper's data layouts as published: UltraFeedback binarized (a string prompt beside full
// message-list transcripts, extra columns), Anthropic/hh-rlhf raw transcripts (auto-detected or
// forced), and content parts; each malformed variant is rejected naming the field.
import t from 'tap'

import { normalizeRow } from '../lib/data'
import { parseHhTranscript } from '../lib/data/formats'
import { rowFormatOf, validateRows } from '../lib/data/validate'
import type { RawRow } from '../lib/data/readers'

const rawRow = (value: unknown, line = 1): RawRow => ({ source: `prefs.jsonl:${line}`, value }) as RawRow

t.test("UltraFeedback binarized: the transcripts' shared messages are the prompt", (t) => {
  const row = {
    prompt: 'Write a haiku about rain.',
    prompt_id: 'abc123',
    chosen: [
      { role: 'user', content: 'Write a haiku about rain.' },
      { role: 'assistant', content: 'Soft rain on the roof' },
    ],
    rejected: [
      { role: 'user', content: 'Write a haiku about rain.' },
      { role: 'assistant', content: 'Rain is wet.' },
    ],
    score_chosen: 8.5,
    score_rejected: 4,
    all_generated_responses: ['x', 'y'],
  }
  t.same(normalizeRow(row), {
    kind: 'messages',
    prompt: [{ role: 'user', content: 'Write a haiku about rain.' }],
    chosen: [{ role: 'assistant', content: 'Soft rain on the roof' }],
    rejected: [{ role: 'assistant', content: 'Rain is wet.' }],
  })
  // A system turn and earlier turns stay in the prompt.
  const multi = normalizeRow({
    prompt: 'q2',
    chosen: [
      { role: 'system', content: 's' },
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'a1' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: 'good' },
    ],
    rejected: [
      { role: 'system', content: 's' },
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'a1' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: 'bad' },
    ],
  })
  t.equal(multi.kind === 'messages' && multi.prompt.length, 4)
  t.throws(() => normalizeRow({ ...row, rejected: row.chosen }), /rejected: identical to chosen/)
  t.end()
})

t.test('content parts are joined; other part types are rejected by field', (t) => {
  const parts = normalizeRow({
    prompt: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Hello ' },
          { type: 'text', text: 'there' },
        ],
      },
    ],
    chosen: { role: 'assistant', content: [{ type: 'text', text: 'Hi!' }] },
    rejected: 'Go away.',
  })
  t.same(parts, {
    kind: 'messages',
    prompt: [{ role: 'user', content: 'Hello there' }],
    chosen: [{ role: 'assistant', content: 'Hi!' }],
    rejected: [{ role: 'assistant', content: 'Go away.' }],
  })
  const image = { prompt: [{ role: 'user', content: [{ type: 'image', url: 'x.png' }] }], chosen: 'a', rejected: 'b' }
  t.throws(() => normalizeRow(image), { name: 'RowError', field: 'prompt[0].content[0].type', message: /only text parts are supported, got "image"/ })
  t.throws(
    () => normalizeRow({ prompt: [{ role: 'user', content: [{ type: 'text' }] }], chosen: 'a', rejected: 'b' }),
    /prompt\[0\]\.content\[0\]\.text: expected a string, got undefined/,
  )
  t.throws(
    () => normalizeRow({ prompt: [{ role: 'user', content: 5 }], chosen: 'a', rejected: 'b' }),
    /prompt\[0\]\.content: expected a string or a list of text parts, got number/,
  )
  t.throws(() => normalizeRow({ prompt: [{ role: 'user', content: [] }], chosen: 'a', rejected: 'b' }), /prompt\[0\]\.content: empty/)
  t.end()
})

const HH = {
  chosen: '\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6.',
  rejected: '\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: No idea.',
}

t.test('Anthropic-HH transcripts: turns without headers, the shared turns as the prompt', (t) => {
  t.same(parseHhTranscript(HH.chosen, 'chosen'), [
    { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: '4.' },
    { role: 'user', content: 'And 3+3?' },
    { role: 'assistant', content: '6.' },
  ])
  const pair = normalizeRow(HH, 'hh')
  t.same(pair, {
    kind: 'messages',
    prompt: [
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '4.' },
      { role: 'user', content: 'And 3+3?' },
    ],
    chosen: [{ role: 'assistant', content: '6.' }],
    rejected: [{ role: 'assistant', content: 'No idea.' }],
  })
  // Without the hh format the same row is plain text, headers inside the prompt (what auto-detection avoids).
  t.equal(normalizeRow(HH).kind, 'text')
  t.throws(() => normalizeRow({ chosen: 'Human: hi\n\nAssistant: a', rejected: HH.rejected }, 'hh'), /chosen: expected an HH transcript starting with/)
  t.throws(
    () => normalizeRow({ chosen: '\n\nHuman: hi\n\nAssistant:', rejected: '\n\nHuman: hi\n\nAssistant: b' }, 'hh'),
    /chosen turn 2: empty Assistant turn/,
  )
  t.throws(
    () => normalizeRow({ chosen: '\n\nHuman: hi\n\nHuman: again\n\nAssistant: a', rejected: '\n\nHuman: hi\n\nAssistant: b' }, 'hh'),
    /chosen turn 2: two Human turns in a row/,
  )
  t.end()
})

t.test('HH is detected when every row is a raw transcript, and can be forced', (t) => {
  t.equal(rowFormatOf([rawRow(HH, 1), rawRow(HH, 2)]), 'hh')
  t.equal(rowFormatOf([rawRow(HH, 1), rawRow({ prompt: 'p', chosen: 'a', rejected: 'b' }, 2)]), 'plain', 'one plain row: no detection')
  t.equal(rowFormatOf([rawRow({ chosen: 'x y', rejected: 'x z' })], 'hh'), 'hh')
  // Forced hh on a row that is not a transcript: an error naming the row and field.
  const forced = validateRows([rawRow({ chosen: 'x y', rejected: 'x z' }, 7)], { format: 'hh', skipInvalid: true })
  t.equal(forced.issues.length, 1)
  t.match(forced.issues[0]!.message, /prefs\.jsonl:7: chosen: expected an HH transcript/)
  t.end()
})

t.test('SFT rows: TRL messages and conversational prompt/completion go through the chat template', async (t) => {
  const { normalizeSftRow } = await import('../lib/data/formats')
  t.same(
    normalizeSftRow({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
      ],
    }),
    {
      kind: 'messages',
      prompt: [{ role: 'user', content: 'hi' }],
      completion: [{ role: 'assistant', content: 'hello' }],
    },
  )
  t.same(normalizeSftRow({ prompt: [{ role: 'user', content: 'hi' }], completion: 'hello' }).kind, 'messages')
  t.same(normalizeSftRow({ prompt: 'p', chosen: 'c', rejected: 'r' }), { kind: 'text', prompt: 'p', completion: 'c' })
  t.throws(() => normalizeSftRow({ messages: [{ role: 'user', content: 'hi' }] }), /messages\[0\]\.role: the last message must be the assistant's/)
  t.throws(() => normalizeSftRow({ messages: [{ role: 'assistant', content: 'x' }] }), /messages: needs at least one message before/)
  t.throws(() => normalizeSftRow({ prompt: 'p' }), /completion: missing/)
  t.throws(
    () => normalizeSftRow({ prompt: [{ role: 'user', content: 'p' }], completion: 5 }),
    /completion: expected a list of \{role, content\} messages, got number/,
  )

  // Through loadSftData with the fixtures' chat template: the prompt ends with the generation
  // prompt, exactly as a preference row with the same turns renders.
  const { loadSftData, loadPreferenceData } = await import('../lib/data')
  const { makeModelDir, tempDir, writeJsonl } = await import('./helpers/data-fixtures')
  const dir = makeModelDir(t)
  const work = tempDir(t)
  const turns = [
    { role: 'user', content: 'how are you ?' },
    { role: 'assistant', content: 'i am good .' },
  ]
  const sft = await loadSftData({
    data: [writeJsonl(`${work}/sft.jsonl`, [{ messages: turns }, { prompt: [turns[0]], completion: [turns[1]] }])],
    tokenizer: dir,
  })
  t.equal(sft.train.length, 2)
  t.same(Array.from(sft.train[0]!.prompt), Array.from(sft.train[1]!.prompt), 'both layouts give the same prompt ids')
  t.same(Array.from(sft.train[0]!.completion), Array.from(sft.train[1]!.completion))
  const prefs = await loadPreferenceData({
    data: writeJsonl(`${work}/prefs.jsonl`, [{ prompt: [turns[0]], chosen: [turns[1]], rejected: 'i am bad .' }]),
    tokenizer: dir,
    log: () => {},
  })
  t.same(Array.from(sft.train[0]!.prompt), Array.from(prefs.train[0]!.prompt), 'SFT and preference rows render the prompt alike')
})

t.test('SFT on Anthropic-HH chosen transcripts; truncation modes pin what is kept', async (t) => {
  const { normalizeSftRow } = await import('../lib/data/formats')
  t.same(normalizeSftRow({ chosen: HH.chosen, rejected: HH.rejected }), {
    kind: 'messages',
    prompt: [
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '4.' },
      { role: 'user', content: 'And 3+3?' },
    ],
    completion: [{ role: 'assistant', content: '6.' }],
  })
  const { tokenizePair } = await import('../lib/data/tokenize-pairs')
  const { tokenizeSftExample } = await import('../lib/data/sft-data')
  // A character tokenizer: ids are char codes, EOS = 0.
  const chars = { encode: (s: string) => Array.from(s, (c) => c.charCodeAt(0)), eosTokenId: 0 } as never
  const pair = { kind: 'text' as const, prompt: 'abcdef', chosen: 'XYZ', rejected: 'UVWQ' }
  const ids = (a: Int32Array) => String.fromCharCode(...Array.from(a).map((x) => x || 0x24)) // EOS shown as $
  const keepEnd = tokenizePair(pair, 'x', chars, { maxPromptLength: 4 })
  const keepStart = tokenizePair(pair, 'x', chars, { maxPromptLength: 4, truncationMode: 'keep_start' })
  t.equal(keepEnd.pair && ids(keepEnd.pair.prompt), 'cdef', 'keep_end (default): the prompt keeps its end')
  t.equal(keepStart.pair && ids(keepStart.pair.prompt), 'abcd', 'keep_start: the prompt keeps its start')
  const both = tokenizePair(pair, 'x', chars, { maxPromptLength: 4, maxCompletionLength: 3, maxLength: 6 })
  t.same(
    both.pair && [ids(both.pair.prompt), ids(both.pair.chosen), ids(both.pair.rejected)],
    ['cdef', 'XY', 'UV'],
    'completions keep their start, prompt + completion ≤ maxLength',
  )
  const sft = tokenizeSftExample('abcdef', 'XYZ', 'x', chars, { maxPromptLength: 4, truncationMode: 'keep_start', maxCompletionLength: 2 })
  t.same(sft && [ids(sft.prompt), ids(sft.completion)], ['abcd', 'XY'], 'SFT: the same rules')
})
