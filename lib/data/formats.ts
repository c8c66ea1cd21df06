// Row formats. Each row is normalised into one PreferencePair, in text or in messages form:
//   standard        {prompt, chosen, rejected} strings
//   conversational  prompt: a message list; chosen/rejected: an assistant message, a message list
//                   or a plain string (taken as one assistant message)
//   implicit prompt {chosen, rejected} full transcripts (strings or message lists); the shared
//                   prefix becomes the prompt, as TRL's extract_prompt does. A string prompt
//                   beside message-list transcripts (UltraFeedback binarized, princeton-nlp's
//                   llama3/mistral ultrafeedback) is the first user turn again: the transcripts'
//                   shared messages are the prompt, as TRL's maybe_extract_prompt does.
//   hh              Anthropic/hh-rlhf raw transcripts ("\n\nHuman: … \n\nAssistant: …"), parsed
//                   into user/assistant turns without the role headers, then as implicit prompt.
// Message content may be a string or a list of {type: 'text', text} parts (joined). Other fields
// (ids, scores, all_generated_responses…) are ignored. Problems raise RowError naming the field.
import { z } from 'zod'

export interface Message {
  role: string
  content: string
}

export type PreferencePair =
  | { kind: 'text'; prompt: string; chosen: string; rejected: string }
  | { kind: 'messages'; prompt: Message[]; chosen: Message[]; rejected: Message[] }

/** Why a row was rejected; `reason` is the key counted by --skip-invalid. */
export type RowErrorReason =
  | 'malformed JSON'
  | 'not an object'
  | 'missing field'
  | 'empty field'
  | 'wrong type'
  | 'chosen identical to rejected'
  | 'no shared prompt'
  | 'chat template failed'

export class RowError extends Error {
  constructor(
    readonly reason: RowErrorReason,
    /** "chosen", "prompt[1].content", or "" for the whole row. */
    readonly field: string,
    message: string,
  ) {
    super(field ? `${field}: ${message}` : message)
    this.name = 'RowError'
  }
}

const messageSchema = z.object({
  role: z.string().min(1, 'empty'),
  content: z.union([z.string(), z.array(z.unknown())]),
})

/** How a file's rows are read: 'auto' detects hh when every row is a raw HH transcript. */
export type RowFormat = 'auto' | 'hh'

const HH_TURN = /\n\n(Human|Assistant):/g

/** Whether `row` holds Anthropic-HH raw transcripts (chosen and rejected start with "\n\nHuman:"). */
export function isHhRow(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const row = value as Record<string, unknown>
  return !('prompt' in row) && [row.chosen, row.rejected].every((v) => typeof v === 'string' && v.startsWith('\n\nHuman:'))
}

/** "\n\nHuman: a\n\nAssistant: b" → [{user, a}, {assistant, b}]; the headers are dropped. */
export function parseHhTranscript(transcript: unknown, field: string): Message[] {
  if (typeof transcript !== 'string') throw new RowError('wrong type', field, `expected an HH transcript string, got ${typeName(transcript)}`)
  const marks = [...transcript.matchAll(HH_TURN)]
  if (marks.length === 0 || marks[0]!.index !== 0) throw new RowError('wrong type', field, 'expected an HH transcript starting with "\\n\\nHuman:"')
  return marks.map((m, i) => {
    const role = m[1] === 'Human' ? 'user' : 'assistant'
    const end = i + 1 < marks.length ? marks[i + 1]!.index : transcript.length
    const content = transcript.slice(m.index! + m[0].length, end).trim()
    if (i > 0 && marks[i - 1]![1] === m[1]) throw new RowError('wrong type', `${field} turn ${i + 1}`, `two ${m[1]} turns in a row`)
    if (content === '') throw new RowError('empty field', `${field} turn ${i + 1}`, `empty ${m[1]} turn`)
    return { role, content }
  })
}

// Content parts: every part must be {type: 'text', text}; they are joined without separators.
function joinParts(parts: unknown[], where: string): string {
  return parts
    .map((part, j) => {
      const p = part as Record<string, unknown> | null
      if (p === null || typeof p !== 'object' || Array.isArray(p))
        throw new RowError('wrong type', `${where}.content[${j}]`, `expected a {type, text} part, got ${typeName(part)}`)
      if (p.type !== 'text') throw new RowError('wrong type', `${where}.content[${j}].type`, `only text parts are supported, got ${JSON.stringify(p.type)}`)
      if (typeof p.text !== 'string') throw new RowError('wrong type', `${where}.content[${j}].text`, `expected a string, got ${typeName(p.text)}`)
      return p.text
    })
    .join('')
}

function present(row: Record<string, unknown>, field: string): boolean {
  return row[field] !== undefined && row[field] !== null
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v
}

function text(row: Record<string, unknown>, field: string): string {
  const v = row[field]
  if (typeof v !== 'string') throw new RowError('wrong type', field, `expected a string, got ${typeName(v)}`)
  if (v.trim() === '') throw new RowError('empty field', field, 'empty')
  return v
}

function messages(value: unknown, field: string, single: 'assistant' | 'none'): Message[] {
  // A lone message object or (for completions) a plain string is one message.
  let list: unknown = value
  if (single === 'assistant' && typeof value === 'string') list = [{ role: 'assistant', content: value }]
  else if (single === 'assistant' && value !== null && typeof value === 'object' && !Array.isArray(value)) list = [value]
  if (!Array.isArray(list)) throw new RowError('wrong type', field, `expected a list of {role, content} messages, got ${typeName(value)}`)
  if (list.length === 0) throw new RowError('empty field', field, 'empty message list')
  return list.map((m, i) => {
    const r = messageSchema.safeParse(m)
    const where = Array.isArray(value) ? `${field}[${i}]` : field
    if (r.success) {
      const content = typeof r.data.content === 'string' ? r.data.content : joinParts(r.data.content, where)
      if (content === '') throw new RowError('empty field', `${where}.content`, 'empty')
      return { role: r.data.role, content }
    }
    const issue = r.error.issues[0]!
    const key = issue.path[0]
    if (key === undefined) throw new RowError('wrong type', where, `expected a {role, content} message, got ${typeName(m)}`)
    const v = (m as Record<string, unknown>)[String(key)]
    const reason: RowErrorReason = v === undefined || v === null ? 'missing field' : issue.code === 'too_small' ? 'empty field' : 'wrong type'
    const expected = key === 'content' ? 'a string or a list of text parts' : 'a string'
    const msg = reason === 'missing field' ? 'missing' : reason === 'empty field' ? 'empty' : `expected ${expected}, got ${typeName(v)}`
    throw new RowError(reason, `${where}.${String(key)}`, msg)
  })
}

/** Normalises one parsed row; throws RowError on anything malformed. `hh`: raw HH transcripts. */
export function normalizeRow(value: unknown, format: 'hh' | 'plain' = 'plain'): PreferencePair {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new RowError('not an object', '', `expected an object with chosen and rejected, got ${typeName(value)}`)
  const row = value as Record<string, unknown>
  for (const field of ['chosen', 'rejected']) if (!present(row, field)) throw new RowError('missing field', field, 'missing')
  if (format === 'hh') return hhRow(row)
  // A prompt key (or column) that is null is a missing prompt, not an implicit-prompt row.
  if ('prompt' in row && !present(row, 'prompt')) throw new RowError('missing field', 'prompt', 'missing')
  // UltraFeedback: a string prompt with full message-list transcripts, which repeat it as a turn.
  const transcripts = 'prompt' in row && typeof row.prompt === 'string' && Array.isArray(row.chosen) && Array.isArray(row.rejected)
  const pair = 'prompt' in row && !transcripts ? explicitPrompt(row) : implicitPrompt(row)
  if (sameCompletion(pair)) throw new RowError('chosen identical to rejected', 'rejected', 'identical to chosen')
  return pair
}

function hhRow(row: Record<string, unknown>): PreferencePair {
  const chosen = parseHhTranscript(row.chosen, 'chosen')
  const rejected = parseHhTranscript(row.rejected, 'rejected')
  const pair = implicitPrompt({ chosen, rejected })
  if (pair.kind === 'messages') {
    for (const field of ['chosen', 'rejected'] as const)
      if (pair[field].some((m) => m.role !== 'assistant'))
        throw new RowError('wrong type', field, 'the completion after the shared prompt must be assistant turns only')
  }
  if (sameCompletion(pair)) throw new RowError('chosen identical to rejected', 'rejected', 'identical to chosen')
  return pair
}

function explicitPrompt(row: Record<string, unknown>): PreferencePair {
  if (typeof row.prompt === 'string') {
    const prompt = text(row, 'prompt')
    // A conversational completion under a text prompt cannot be rendered consistently.
    return { kind: 'text', prompt, chosen: text(row, 'chosen'), rejected: text(row, 'rejected') }
  }
  if (!Array.isArray(row.prompt)) throw new RowError('wrong type', 'prompt', `expected a string or a list of messages, got ${typeName(row.prompt)}`)
  return {
    kind: 'messages',
    prompt: messages(row.prompt, 'prompt', 'none'),
    chosen: messages(row.chosen, 'chosen', 'assistant'),
    rejected: messages(row.rejected, 'rejected', 'assistant'),
  }
}

function implicitPrompt(row: Record<string, unknown>): PreferencePair {
  if (typeof row.chosen === 'string') {
    const chosen = text(row, 'chosen')
    const rejected = text(row, 'rejected')
    if (chosen === rejected) throw new RowError('chosen identical to rejected', 'rejected', 'identical to chosen')
    let n = commonPrefix(chosen, rejected, (a, b) => a === b)
    // TRL's extract_prompt: a space right before the split goes with the completions.
    if (n > 0 && n < Math.min(chosen.length, rejected.length) && chosen[n - 1] === ' ') n--
    if (n === 0) throw new RowError('no shared prompt', 'chosen', 'chosen and rejected share no prefix to take as the prompt')
    return checkCompletions({ kind: 'text', prompt: chosen.slice(0, n), chosen: chosen.slice(n), rejected: rejected.slice(n) })
  }
  const chosen = messages(row.chosen, 'chosen', 'none')
  const rejected = messages(row.rejected, 'rejected', 'none')
  if (JSON.stringify(chosen) === JSON.stringify(rejected)) throw new RowError('chosen identical to rejected', 'rejected', 'identical to chosen')
  const n = commonPrefix(chosen, rejected, (a, b) => a.role === b.role && a.content === b.content)
  if (n === 0) throw new RowError('no shared prompt', 'chosen', 'chosen and rejected share no leading messages to take as the prompt')
  return checkCompletions({ kind: 'messages', prompt: chosen.slice(0, n), chosen: chosen.slice(n), rejected: rejected.slice(n) })
}

// One transcript may be the other plus more: its completion is then empty.
function checkCompletions(pair: PreferencePair): PreferencePair {
  for (const field of ['chosen', 'rejected'] as const)
    if (pair[field].length === 0) throw new RowError('empty field', field, 'empty once the shared prompt is removed')
  return pair
}

function commonPrefix<T>(a: ArrayLike<T>, b: ArrayLike<T>, eq: (x: T, y: T) => boolean): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && eq(a[i]!, b[i]!)) i++
  return i
}

function sameCompletion(pair: PreferencePair): boolean {
  if (pair.kind === 'text') return pair.chosen === pair.rejected
  return JSON.stringify(pair.chosen) === JSON.stringify(pair.rejected)
}

/** One SFT example before tokenization: text, or messages rendered later by the chat template. */
export type SftPair = { kind: 'text'; prompt: string; completion: string } | { kind: 'messages'; prompt: Message[]; completion: Message[] }

/**
 * Normalises one SFT row (TRL's layouts): {prompt, completion} strings; {prompt, chosen} (SFT on the
 * chosen answers of a preference set); a conversational prompt (message list) with a completion
 * (assistant message, list or string); {messages}, whose last assistant turn is the completion
 * and everything before it the prompt; or an Anthropic-HH {chosen} transcript, read the same way.
 * Throws RowError naming the field.
 */
export function normalizeSftRow(value: unknown): SftPair {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new RowError('not an object', '', `expected an object with prompt and completion (or messages), got ${typeName(value)}`)
  const row = value as Record<string, unknown>
  // An Anthropic-HH row without a prompt: SFT on its chosen transcript (the paper's HH SFT stage).
  const hh = !('prompt' in row) && !('messages' in row) && typeof row.chosen === 'string' && row.chosen.startsWith('\n\nHuman:')
  if ('messages' in row || hh) {
    const field = hh ? 'chosen' : 'messages'
    const list = hh ? parseHhTranscript(row.chosen, 'chosen') : messages(row.messages, 'messages', 'none')
    const last = list[list.length - 1]!
    if (last.role !== 'assistant')
      throw new RowError('wrong type', `${field}[${list.length - 1}].role`, `the last message must be the assistant's (the completion), got "${last.role}"`)
    if (list.length < 2) throw new RowError('empty field', field, 'needs at least one message before the final assistant turn')
    return { kind: 'messages', prompt: list.slice(0, -1), completion: [last] }
  }
  if (!present(row, 'prompt')) throw new RowError('missing field', 'prompt', 'missing')
  const key = 'completion' in row ? 'completion' : 'chosen' in row ? 'chosen' : undefined
  if (key === undefined) throw new RowError('missing field', 'completion', 'missing')
  if (typeof row.prompt === 'string') return { kind: 'text', prompt: row.prompt, completion: text(row, key) }
  if (!Array.isArray(row.prompt)) throw new RowError('wrong type', 'prompt', `expected a string or a list of messages, got ${typeName(row.prompt)}`)
  return { kind: 'messages', prompt: messages(row.prompt, 'prompt', 'none'), completion: messages(row[key], key, 'assistant') }
}
