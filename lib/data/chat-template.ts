// Chat templates, rendered the way transformers' apply_chat_template does (Jinja with trim_blocks
// and lstrip_blocks, variables messages, add_generation_prompt and the special tokens), and
// preference pairs turned into text the way TRL's maybe_apply_chat_template does: the prompt with
// a generation prompt, each completion as the rest of the full conversation.
import { Template } from '@huggingface/jinja'

import { EdpoInputError } from '../core/errors'
import { type Message, type PreferencePair, RowError } from './formats'
import { OverBudget, renderWithinBudget } from './template-budget'

export type TextPair = Extract<PreferencePair, { kind: 'text' }>

export interface ChatTemplate {
  /** The template's text. */
  readonly source: string
  render(messages: readonly Message[], opts: { addGenerationPrompt: boolean }): string
}

/**
 * Compiles `source`; `variables` are the special tokens (bos_token, eos_token, ...) and anything
 * else transformers passes to every render.
 */
export function compileChatTemplate(source: string, variables: Readonly<Record<string, unknown>>, where = 'chat_template'): ChatTemplate {
  let template: Template
  try {
    template = new Template(source)
  } catch (e) {
    throw new EdpoInputError(`${where}: does not compile: ${(e as Error).message}`, { cause: e })
  }
  return {
    source,
    render(messages, opts) {
      try {
        return renderWithinBudget(template, {
          ...variables,
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          add_generation_prompt: opts.addGenerationPrompt,
        })
      } catch (e) {
        // A template over budget is the template's fault, not the row's: it stops the run.
        if (e instanceof OverBudget)
          throw new EdpoInputError(
            `${where}: the chat template went over its rendering budget (${e.message}); edpo stops templates that loop or grow without bound: fix or replace this template`,
            { cause: e },
          )
        throw e
      }
    },
  }
}

/** Picks the template from tokenizer_config.json's chat_template: a string, or a list of {name, template}. */
export function selectChatTemplate(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'string') return value
  if (Array.isArray(value)) {
    const named = value.filter(
      (t): t is { name: string; template: string } => t !== null && typeof t === 'object' && typeof t.name === 'string' && typeof t.template === 'string',
    )
    const found = named.find((t) => t.name === 'default')
    if (found) return found.template
    throw new EdpoInputError(
      `${where}: chat_template: a list of templates needs one named 'default' (found ${named.map((t) => `'${t.name}'`).join(', ') || 'none'})`,
    )
  }
  throw new EdpoInputError(`${where}: chat_template: expected a string or a list of {name, template}`)
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

// transformers' continue_final_message: cut the rendering right after the last message's text.
function continueFinal(rendered: string, last: Message): string {
  const content = last.content.trim()
  const at = rendered.lastIndexOf(content)
  if (at < 0) throw new RowError('chat template failed', 'prompt', 'the rendered prompt does not contain its final message')
  return rendered.slice(0, at + content.length)
}

/**
 * Renders a conversational pair into text. The prompt gets the generation prompt when its last
 * message is not the assistant's (otherwise that message is continued); chosen and rejected are
 * what the full conversations add after the prompt. Text pairs are returned unchanged.
 */
export function applyChatTemplate(template: ChatTemplate, pair: PreferencePair): TextPair {
  if (pair.kind === 'text') return pair
  try {
    const last = pair.prompt[pair.prompt.length - 1]!
    let prompt =
      last.role === 'assistant'
        ? continueFinal(template.render(pair.prompt, { addGenerationPrompt: false }), last)
        : template.render(pair.prompt, { addGenerationPrompt: true })
    const fullChosen = template.render([...pair.prompt, ...pair.chosen], { addGenerationPrompt: false })
    const fullRejected = template.render([...pair.prompt, ...pair.rejected], { addGenerationPrompt: false })
    // Some templates render the generation prompt slightly differently from the start of the
    // assistant turn (TRL notes DeepSeek-R1); like TRL, keep only what all three share.
    prompt = prompt.slice(0, Math.min(commonPrefixLength(prompt, fullChosen), commonPrefixLength(prompt, fullRejected)))
    return { kind: 'text', prompt, chosen: fullChosen.slice(prompt.length), rejected: fullRejected.slice(prompt.length) }
  } catch (e) {
    if (e instanceof RowError || e instanceof EdpoInputError) throw e
    throw new RowError('chat template failed', '', `chat template: ${(e as Error).message}`)
  }
}
