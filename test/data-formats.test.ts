// Row formats: standard, conversational and implicit-prompt rows normalise to one pair shape;
// every bad row names its field.
import t from 'tap'

import { data } from '../lib/index'

const user = (content: string) => ({ role: 'user', content })
const assistant = (content: string) => ({ role: 'assistant', content })

t.test('standard rows: prompt, chosen and rejected strings; other fields ignored', (t) => {
  t.same(data.normalizeRow({ prompt: 'how are you ?', chosen: 'fine', rejected: 'bad', id: 7, score_chosen: 9.5 }), {
    kind: 'text',
    prompt: 'how are you ?',
    chosen: 'fine',
    rejected: 'bad',
  })
  t.end()
})

t.test('conversational rows: completions as a message list, one message or a plain string', (t) => {
  const prompt = [{ role: 'system', content: 'be nice' }, user('hello')]
  const want = { kind: 'messages', prompt, chosen: [assistant('fine')], rejected: [assistant('bad')] }
  t.same(data.normalizeRow({ prompt, chosen: [assistant('fine')], rejected: [assistant('bad')] }), want, 'lists')
  t.same(data.normalizeRow({ prompt, chosen: assistant('fine'), rejected: assistant('bad') }), want, 'single messages')
  t.same(data.normalizeRow({ prompt, chosen: 'fine', rejected: 'bad' }), want, 'strings become assistant messages')
  t.same(
    data.normalizeRow({ prompt: [user('hi')], chosen: [assistant('a'), user('b'), assistant('c')], rejected: [assistant('d')] }).chosen,
    [assistant('a'), user('b'), assistant('c')],
    'multi-turn completions are kept whole',
  )
  t.end()
})

t.test('implicit prompt, text: the shared prefix is the prompt (TRL extract_prompt, Anthropic-HH)', (t) => {
  const chosen = '\n\nHuman: how are you ?\n\nAssistant: fine thanks'
  const rejected = '\n\nHuman: how are you ?\n\nAssistant: bad'
  t.same(
    data.normalizeRow({ chosen, rejected }),
    {
      kind: 'text',
      prompt: '\n\nHuman: how are you ?\n\nAssistant:',
      chosen: ' fine thanks',
      rejected: ' bad',
    },
    'the space before the split goes with the completions',
  )
  // The prefix is character-wise, exactly as TRL takes it: both answers starting with "f" share it.
  t.same(data.normalizeRow({ chosen: 'Human: hi Assistant: fine', rejected: 'Human: hi Assistant: fun' }), {
    kind: 'text',
    prompt: 'Human: hi Assistant: f',
    chosen: 'ine',
    rejected: 'un',
  })
  t.end()
})

t.test('implicit prompt, messages: the shared leading messages are the prompt', (t) => {
  const chosen = [user('hello'), assistant('hi'), user('how are you ?'), assistant('fine')]
  const rejected = [user('hello'), assistant('hi'), user('how are you ?'), assistant('bad')]
  t.same(data.normalizeRow({ chosen, rejected }), {
    kind: 'messages',
    prompt: chosen.slice(0, 3),
    chosen: [assistant('fine')],
    rejected: [assistant('bad')],
  })
  t.end()
})

// Each bad row: the reason counted by --skip-invalid, the field and the message.
const bad: [string, unknown, string, string, string][] = [
  ['not an object', ['a'], 'not an object', '', 'expected an object with chosen and rejected, got array'],
  ['null row', null, 'not an object', '', 'expected an object with chosen and rejected, got null'],
  ['missing chosen', { prompt: 'p', rejected: 'r' }, 'missing field', 'chosen', 'chosen: missing'],
  ['null prompt (not an implicit-prompt row)', { prompt: null, chosen: 'c', rejected: 'r' }, 'missing field', 'prompt', 'prompt: missing'],
  ['null rejected', { prompt: 'p', chosen: 'c', rejected: null }, 'missing field', 'rejected', 'rejected: missing'],
  ['empty prompt', { prompt: '', chosen: 'c', rejected: 'r' }, 'empty field', 'prompt', 'prompt: empty'],
  ['blank chosen', { prompt: 'p', chosen: '  \n', rejected: 'r' }, 'empty field', 'chosen', 'chosen: empty'],
  ['number rejected', { prompt: 'p', chosen: 'c', rejected: 3 }, 'wrong type', 'rejected', 'rejected: expected a string, got number'],
  [
    'prompt object',
    { prompt: { text: 'p' }, chosen: 'c', rejected: 'r' },
    'wrong type',
    'prompt',
    'prompt: expected a string or a list of messages, got object',
  ],
  ['identical', { prompt: 'p', chosen: 'same', rejected: 'same' }, 'chosen identical to rejected', 'rejected', 'rejected: identical to chosen'],
  [
    'identical messages',
    { prompt: [user('p')], chosen: 'x', rejected: [assistant('x')] },
    'chosen identical to rejected',
    'rejected',
    'rejected: identical to chosen',
  ],
  [
    'message without content',
    { prompt: [user('p'), { role: 'user' }], chosen: 'c', rejected: 'r' },
    'missing field',
    'prompt[1].content',
    'prompt[1].content: missing',
  ],
  ['message with empty role', { prompt: [user('p')], chosen: { role: '', content: 'c' }, rejected: 'r' }, 'empty field', 'chosen.role', 'chosen.role: empty'],
  [
    'message content a number',
    { prompt: [user('p')], chosen: 'c', rejected: [{ role: 'assistant', content: 5 }] },
    'wrong type',
    'rejected[0].content',
    'rejected[0].content: expected a string or a list of text parts, got number',
  ],
  [
    'message a string in a list',
    { prompt: ['hello'], chosen: 'c', rejected: 'r' },
    'wrong type',
    'prompt[0]',
    'prompt[0]: expected a {role, content} message, got string',
  ],
  ['empty message list', { prompt: [], chosen: 'c', rejected: 'r' }, 'empty field', 'prompt', 'prompt: empty message list'],
  ['implicit, identical', { chosen: 'Human: a', rejected: 'Human: a' }, 'chosen identical to rejected', 'rejected', 'rejected: identical to chosen'],
  ['implicit, no prefix', { chosen: 'yes', rejected: 'no' }, 'no shared prompt', 'chosen', 'chosen: chosen and rejected share no prefix to take as the prompt'],
  [
    'implicit, chosen is a prefix of rejected',
    { chosen: 'Human: a', rejected: 'Human: a b' },
    'empty field',
    'chosen',
    'chosen: empty once the shared prompt is removed',
  ],
  [
    'implicit messages, no prefix',
    { chosen: [user('a')], rejected: [user('b')] },
    'no shared prompt',
    'chosen',
    'chosen: chosen and rejected share no leading messages to take as the prompt',
  ],
  ['implicit, mixed types', { chosen: 'text', rejected: [user('b')] }, 'wrong type', 'rejected', 'rejected: expected a string, got array'],
]

for (const [name, row, reason, field, message] of bad) {
  t.test(`bad row: ${name}`, (t) => {
    t.throws(() => data.normalizeRow(row), { name: 'RowError', reason, field, message })
    t.end()
  })
}
