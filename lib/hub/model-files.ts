// The files edpo reads from a model or adapter repo, and no others: config.json, the safetensors
// weights (all shards of model.safetensors.index.json, or the top-level *.safetensors), the
// tokenizer and chat-template files and generation_config.json when the repo has them.
import { EdpoInputError } from '../core/errors'
import { type FileSelector, MissingFile } from './repo-snapshot'

const OPTIONAL = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', 'chat_template.json']
const INDEX = 'model.safetensors.index.json'

function need(files: readonly string[], file: string, what: string, why: string): string {
  if (!files.includes(file)) throw new MissingFile(what, `no ${file}${why}`)
  return file
}

export function modelFiles(what: string): FileSelector {
  return async (files, read) => {
    const chosen = [need(files, 'config.json', what, '')]
    if (files.includes(INDEX)) {
      let index: unknown
      try {
        index = JSON.parse(await read(INDEX))
      } catch (e) {
        if (e instanceof EdpoInputError) throw e
        throw new EdpoInputError(`${what}: ${INDEX} is not valid JSON (${(e as Error).message})`)
      }
      const map = (index as { weight_map?: unknown } | null)?.weight_map
      if (typeof map !== 'object' || map === null) throw new EdpoInputError(`${what}: ${INDEX} has no weight_map`)
      const shards = [...new Set(Object.values(map as Record<string, unknown>))]
      if (!shards.every((s): s is string => typeof s === 'string')) throw new EdpoInputError(`${what}: ${INDEX}: weight_map values must be file names`)
      chosen.push(INDEX, ...shards.map((s) => need(files, s, what, ` (listed in ${INDEX})`)))
    } else {
      const weights = files.filter((f) => !f.includes('/') && f.endsWith('.safetensors'))
      if (weights.length === 0) {
        const bin = files.some((f) => f.endsWith('.bin') || f.endsWith('.pt') || f.endsWith('.pth'))
        if (bin)
          throw new EdpoInputError(
            `${what}: the repo has only PyTorch pickle weights (.bin): edpo reads .safetensors only (it never unpickles a stranger's file)`,
          )
        throw new MissingFile(what, `no model.safetensors (nor ${INDEX})`)
      }
      chosen.push(...weights)
    }
    chosen.push(...OPTIONAL.filter((f) => files.includes(f)))
    return chosen
  }
}

export function adapterFiles(what: string): FileSelector {
  return async (files) => [need(files, 'adapter_config.json', what, ''), need(files, 'adapter_model.safetensors', what, '')]
}
