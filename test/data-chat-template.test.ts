// Chat templates: rendered like transformers' apply_chat_template, and preference pairs split like
// TRL's maybe_apply_chat_template (prompt with the generation prompt, completions as the rest).
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { EdpoInputError, data } from '../lib/index'
import { CHAT_TEMPLATE, makeModelDir, tokenizerConfig } from './helpers/data-fixtures'

const user = (content: string) => ({ role: 'user', content })
const assistant = (content: string) => ({ role: 'assistant', content })

t.test('renders messages with bos_token and add_generation_prompt (trim_blocks as transformers)', (t) => {
  const tpl = data.compileChatTemplate(CHAT_TEMPLATE, { bos_token: '<s>', eos_token: '</s>' })
  const messages = [{ role: 'system', content: 'be nice' }, user('how are you ?')]
  t.equal(tpl.render(messages, { addGenerationPrompt: false }), '<s><|system|>\nbe nice<|end|>\n<|user|>\nhow are you ?<|end|>\n')
  t.equal(tpl.render(messages, { addGenerationPrompt: true }), '<s><|system|>\nbe nice<|end|>\n<|user|>\nhow are you ?<|end|>\n<|assistant|>\n')
  t.end()
})

t.test('a conversational pair: the prompt ends with the generation prompt, completions are the rest', (t) => {
  const tok = data.loadTokenizer(makeModelDir(t))
  const pair = data.normalizeRow({ prompt: [user('how are you ?')], chosen: 'fine thanks', rejected: [assistant('bad')] })
  t.same(data.applyChatTemplate(tok.chatTemplate!, pair), {
    kind: 'text',
    prompt: '<s><|user|>\nhow are you ?<|end|>\n<|assistant|>\n',
    chosen: 'fine thanks<|end|>\n',
    rejected: 'bad<|end|>\n',
  })
  const text = data.normalizeRow({ prompt: 'hello', chosen: 'fine', rejected: 'bad' })
  t.equal(data.applyChatTemplate(tok.chatTemplate!, text), text, 'text pairs pass unchanged')
  t.end()
})

t.test('a prompt ending with an assistant message is continued, without a generation prompt', (t) => {
  const tpl = data.compileChatTemplate(CHAT_TEMPLATE, { bos_token: '<s>' })
  const pair = data.normalizeRow({ prompt: [user('hello'), assistant('i am')], chosen: 'fine', rejected: 'bad' })
  const out = data.applyChatTemplate(tpl, pair)
  t.equal(out.prompt, '<s><|user|>\nhello<|end|>\n<|assistant|>\ni am')
  t.equal(out.chosen, '<|end|>\n<|assistant|>\nfine<|end|>\n', 'as TRL: the completion continues the full conversation')
  t.end()
})

t.test('special tokens written as AddedToken objects reach the template as strings; eos_token usable', (t) => {
  const llama2ish =
    "{% for m in messages %}{% if m.role == 'user' %}{{ bos_token }}[INST] {{ m.content }} [/INST]{% else %} {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}"
  const dir = makeModelDir(t, tokenizerConfig({ chat_template: llama2ish }))
  const tok = data.loadTokenizer(dir)
  t.same(tok.specialTokens, { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' })
  const out = data.applyChatTemplate(tok.chatTemplate!, data.normalizeRow({ prompt: [user('hello')], chosen: 'fine', rejected: 'bad' }))
  t.same(out, { kind: 'text', prompt: '<s>[INST] hello [/INST]', chosen: ' fine</s>', rejected: ' bad</s>' })
  t.end()
})

t.test('raise_exception in a template becomes a row error', (t) => {
  const strict = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}" + CHAT_TEMPLATE
  const tpl = data.compileChatTemplate(strict, { bos_token: '<s>' })
  const pair = data.normalizeRow({ prompt: [assistant('hi'), user('hello')], chosen: 'fine', rejected: 'bad' })
  t.throws(() => data.applyChatTemplate(tpl, pair), { name: 'RowError', reason: 'chat template failed', message: /Conversations must start with the user/ })
  t.end()
})

t.test('template sources: a named list picks "default"; chat_template.jinja wins; bad templates are refused', (t) => {
  const listed = makeModelDir(
    t,
    tokenizerConfig({
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: CHAT_TEMPLATE },
      ],
    }),
  )
  t.equal(data.loadTokenizer(listed).chatTemplate!.source, CHAT_TEMPLATE)
  const noDefault = makeModelDir(t, tokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'TOOLS' }] }))
  t.throws(
    () => data.loadTokenizer(noDefault),
    new EdpoInputError(`${noDefault}: tokenizer_config.json: chat_template: a list of templates needs one named 'default' (found 'tool_use')`),
  )
  const jinja = makeModelDir(t)
  fs.writeFileSync(path.join(jinja, 'chat_template.jinja'), '{{ messages[0].content }}')
  t.equal(data.loadTokenizer(jinja).chatTemplate!.render([user('x')], { addGenerationPrompt: false }), 'x')
  const broken = makeModelDir(t, tokenizerConfig({ chat_template: '{% for m in messages %}' }))
  t.throws(() => data.loadTokenizer(broken), { name: 'EdpoInputError', message: new RegExp(`^${broken}: chat_template: does not compile`) })
  t.equal(data.loadTokenizer(makeModelDir(t, tokenizerConfig({ chat_template: undefined }))).chatTemplate, undefined, 'no template: none')
  t.end()
})

// Two templates as published with models, rendered to the strings transformers gives.
const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

t.test('published templates: Llama-3 Instruct and ChatML', (t) => {
  const row = data.normalizeRow({ prompt: [{ role: 'system', content: 'Be brief.' }, user(' Hi ')], chosen: 'Hello!', rejected: 'Go away.' })
  const llama = data.applyChatTemplate(data.compileChatTemplate(LLAMA3, { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' }), row)
  t.same(llama, {
    kind: 'text',
    prompt:
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    chosen: 'Hello!<|eot_id|>',
    rejected: 'Go away.<|eot_id|>',
  })
  const chatml = data.applyChatTemplate(data.compileChatTemplate(CHATML, {}), row)
  t.same(chatml, {
    kind: 'text',
    prompt: '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n',
    chosen: 'Hello!<|im_end|>\n',
    rejected: 'Go away.<|im_end|>\n',
  })
  t.end()
})
