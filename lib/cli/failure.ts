// How the edpo command prints an error. Errors meant for users (EdpoError: bad flags, files, rows,
// folders) and file-system errors (EROFS, EACCES, ENOSPC, ... with the path at fault) print as one
// message without a stack trace; only an unexpected failure (a bug) keeps its stack. EDPO_DEBUG=1
// adds the stack (and its causes) to every error.
import { EdpoError } from '../core/errors'
import { describeCause, isSystemError } from '../train/fs-errors'

function stackWithCauses(e: unknown): string {
  const parts: string[] = []
  for (let c: unknown = e; c !== undefined; c = c instanceof Error ? c.cause : undefined) {
    parts.push(c instanceof Error ? (c.stack ?? c.message) : String(c))
    if (!(c instanceof Error)) break
  }
  return parts.join('\ncaused by: ')
}

export function formatFailure(e: unknown, debug: boolean): string {
  let message: string
  if (e instanceof EdpoError) message = e.message
  else if (isSystemError(e)) message = `${e.path ? `${e.path}: ` : ''}${describeCause(e)}`
  else return e instanceof Error ? (e.stack ?? e.message) : String(e)
  return debug ? `${message}\n${stackWithCauses(e)}` : message
}
