// Chat templates come from strangers' model repos, and @huggingface/jinja has no limits of its
// own: `range(1000000000)` builds a billion-element array, nested loops run for hours, string
// doubling exhausts memory. Rendering here goes through an Interpreter that counts every node it
// evaluates, watches the clock, caps the length of every string and list it produces and the
// depth of nesting (recursive macros), and replaces `range` by one that refuses huge ranges.
import { Environment, Interpreter, type Template } from '@huggingface/jinja'

export interface TemplateBudget {
  /** Nodes evaluated per render. */
  steps: number
  /** Milliseconds per render. */
  milliseconds: number
  /** Characters of any string produced (the output included). */
  chars: number
  /** Elements of any list produced (range() included). */
  items: number
  /** Nesting of evaluation (recursive macros). */
  depth: number
}

// A real template (Llama 3, Qwen, DeepSeek) renders a conversation in a few thousand steps and
// well under a millisecond per turn; these bounds leave orders of magnitude of room.
export const DEFAULT_TEMPLATE_BUDGET: TemplateBudget = { steps: 2_000_000, milliseconds: 1000, chars: 4_000_000, items: 100_000, depth: 256 }

export class OverBudget extends Error {}

type Statement = Parameters<Interpreter['evaluate']>[0]
type Value = ReturnType<Interpreter['evaluate']>

class BudgetedInterpreter extends Interpreter {
  private steps = 0
  private depth = 0
  private readonly deadline: number

  constructor(
    env: Environment,
    private readonly budget: TemplateBudget,
  ) {
    super(env)
    this.deadline = performance.now() + budget.milliseconds
  }

  override evaluate(statement: Statement, environment: Environment): Value {
    const b = this.budget
    if (++this.steps > b.steps) throw new OverBudget(`more than ${b.steps} evaluation steps`)
    if ((this.steps & 255) === 0 && performance.now() > this.deadline) throw new OverBudget(`more than ${b.milliseconds} ms`)
    if (++this.depth > b.depth) throw new OverBudget(`nesting deeper than ${b.depth} (a recursive macro?)`)
    try {
      const value = super.evaluate(statement, environment)
      const v = (value as { value?: unknown }).value
      if (typeof v === 'string' && v.length > b.chars) throw new OverBudget(`a string longer than ${b.chars} characters`)
      if (Array.isArray(v) && v.length > b.items) throw new OverBudget(`a list longer than ${b.items} items`)
      return value
    } finally {
      this.depth--
    }
  }
}

function boundedRange(budget: TemplateBudget) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) {
      stop = start
      start = 0
    }
    if (![start, stop, step].every(Number.isFinite)) throw new Error('range() takes numbers')
    if (step === 0) throw new Error('range() step must not be zero')
    const n = Math.max(0, Math.ceil((stop - start) / step))
    if (n > budget.items) throw new OverBudget(`range() of ${n} items (more than ${budget.items})`)
    return Array.from({ length: n }, (_, i) => start + i * step)
  }
}

// What Template.render puts in every environment (its setupGlobals is not exported).
function globals(env: Environment, budget: TemplateBudget): void {
  for (const [k, v] of [
    ['false', false],
    ['true', true],
    ['none', null],
    ['True', true],
    ['False', false],
    ['None', null],
  ] as const)
    env.set(k, v)
  env.set('raise_exception', (message: unknown) => {
    throw new Error(String(message))
  })
  env.set('range', boundedRange(budget))
  env.set('strftime_now', (format: unknown) => strftime(new Date(), String(format)))
}

function strftime(date: Date, format: string): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return format.replace(/%[YmdbBHM%]/g, (t) => {
    switch (t) {
      case '%Y':
        return String(date.getFullYear())
      case '%m':
        return pad(date.getMonth() + 1)
      case '%d':
        return pad(date.getDate())
      case '%b':
        return date.toLocaleString('en-US', { month: 'short' })
      case '%B':
        return date.toLocaleString('en-US', { month: 'long' })
      case '%H':
        return pad(date.getHours())
      case '%M':
        return pad(date.getMinutes())
      default:
        return '%'
    }
  })
}

/** Renders a compiled template under `budget`; throws OverBudget when it goes over. */
export function renderWithinBudget(template: Template, variables: Readonly<Record<string, unknown>>, budget: TemplateBudget = DEFAULT_TEMPLATE_BUDGET): string {
  const env = new Environment()
  globals(env, budget)
  for (const [k, v] of Object.entries(variables)) env.set(k, v)
  try {
    const out = new BudgetedInterpreter(env, budget).run(template.parsed)
    return String((out as { value: unknown }).value)
  } catch (e) {
    // V8's own limits (a string or array too large to allocate, the call stack) are the same failure.
    if (e instanceof RangeError) throw new OverBudget(e.message)
    throw e
  }
}
