// Hub ids as users write them: `org/name` with an optional `@revision` (a branch, tag or commit).
// Both parts end up in cache paths (models--org--name, refs/<revision>), so they are checked here,
// once: safe characters only, no `..`, nothing absolute.
import { EdpoInputError } from '../core/errors'

export type RepoKind = 'model' | 'dataset'

export interface HubId {
  /** `org/name` */
  repo: string
  /** Branch, tag or 40-hex commit; undefined means the option's revision or `main`. */
  revision?: string
}

// The Hub's own rule for names: word characters, '-' and '.', not starting or ending with '-' or
// '.', no '--' or '..' (both would break the models--org--name folder name), at most 96 characters.
const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/
const REVISION = /^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$/

function validPart(part: string): boolean {
  return part.length <= 96 && PART.test(part) && !part.includes('--') && !part.includes('..')
}

/** Whether `text` is a safe revision: a branch, tag (may contain '/') or commit, no '..' or '//'. */
export function validRevision(revision: string): boolean {
  return revision.length <= 256 && REVISION.test(revision) && !revision.includes('..') && !revision.includes('//') && !revision.endsWith('/')
}

/** `text` as a Hub id, or undefined when it does not have the shape of one (then it is a path). */
export function parseHubId(text: string): HubId | undefined {
  const at = text.indexOf('@')
  const repo = at < 0 ? text : text.slice(0, at)
  const parts = repo.split('/')
  if (parts.length !== 2 || !parts.every(validPart)) return undefined
  if (at < 0) return { repo }
  return { repo, revision: text.slice(at + 1) }
}

/** Like parseHubId, for an id known to be meant as one: a bad revision is an error naming `flag`. */
export function checkHubId(id: HubId, flag: string): HubId {
  if (id.revision !== undefined && !validRevision(id.revision))
    throw new EdpoInputError(`${flag} ${id.repo}@${id.revision}: not a valid revision (a branch, tag or commit: letters, digits, '_', '-', '.', '/', no '..')`)
  return id
}

/** The id as written back in messages. */
export function formatHubId(id: HubId): string {
  return id.revision === undefined ? id.repo : `${id.repo}@${id.revision}`
}
