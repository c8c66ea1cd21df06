// Chat templates from strangers' repos render under a budget: a huge range, nested loops, a
// recursive macro and string doubling each stop within a second or two with a clear error naming
// the model folder's template, instead of exhausting memory or hanging.
import t from 'tap'

import { EdpoInputError } from '../lib/core/errors'
import { applyChatTemplate, compileChatTemplate } from '../lib/data/chat-template'

const BOMBS: Record<string, string> = {
  'a huge range': '{% for i in range(1000000000) %}x{% endfor %}',
  'nested loops': '{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}',
  'a recursive macro': '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  'an exponential macro': '{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}',
  'string doubling': "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
}

for (const [name, source] of Object.entries(BOMBS)) {
  t.test(name, (t) => {
    const template = compileChatTemplate(source, { eos_token: '</s>' }, '/models/stranger: chat_template')
    const heapBefore = process.memoryUsage().heapUsed
    const start = performance.now()
    const pair = {
      kind: 'conversational' as const,
      prompt: [{ role: 'user' as const, content: 'hi' }],
      chosen: [{ role: 'assistant' as const, content: 'a' }],
      rejected: [{ role: 'assistant' as const, content: 'b' }],
    }
    const err = (() => {
      try {
        applyChatTemplate(template, pair as never)
      } catch (e) {
        return e
      }
    })()
    const seconds = (performance.now() - start) / 1000
    t.ok(err instanceof EdpoInputError, 'an EdpoInputError, not a crash or a row error')
    t.match((err as Error).message, /^\/models\/stranger: chat_template: the chat template went over its rendering budget \(/)
    t.ok(seconds < 2, `stopped in ${seconds.toFixed(2)} s`)
    t.ok(process.memoryUsage().heapUsed - heapBefore < 256 * 2 ** 20, 'bounded memory')
    t.end()
  })
}

t.test('an ordinary template renders as before', (t) => {
  const template = compileChatTemplate(
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    {},
    'x',
  )
  t.equal(template.render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }), '<user>hi<assistant>')
  t.end()
})
