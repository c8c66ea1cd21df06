// The edge where Hub ids become local paths: a command's options in, the same options out with
// --model, --reference-model, --adapter, --data and --eval-data pointing into the Hub cache, and
// the Hub-only options (--data-split, --eval-data-split, --data-config, --model-revision) used up.
// Nothing below this sees a Hub id. A string that exists as a local path stays a path.
import * as fs from 'node:fs'

import { EdpoInputError } from '../core/errors'
import { adapterFiles, modelFiles } from './model-files'
import { splitFiles } from './dataset-files'
import { checkHubId, formatHubId, type HubId, parseHubId } from './hub-id'
import { fetchSnapshot } from './repo-snapshot'
import { type HubSettings, hubSettings } from './settings'

/** The options this module reads (all optional: each command has some of them). */
export const HUB_ONLY_OPTIONS = ['dataSplit', 'evalDataSplit', 'dataConfig', 'modelRevision'] as const

export interface ResolveHubOptions {
  log?: (line: string) => void
  /** Default: from the environment (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN). */
  settings?: HubSettings
  /** How the user wrote each option, for messages (parseArgs' `typed`). */
  typed?: Record<string, string>
  /** The split --data names when --data-split is not given (train: 'train'; eval: 'test'). */
  defaultDataSplit?: string
}

/** A Hub id when `text` is not a local path and has the shape of one. */
function hubIdOf(text: unknown): HubId | undefined {
  if (typeof text !== 'string' || fs.existsSync(text)) return undefined
  return parseHubId(text)
}

export async function resolveHubOptions(options: Record<string, unknown>, opts: ResolveHubOptions = {}): Promise<Record<string, unknown>> {
  const out = { ...options }
  const typed = (name: string, flag: string) => opts.typed?.[name] ?? flag
  const hubOnly = Object.fromEntries(HUB_ONLY_OPTIONS.map((k) => [k, out[k]])) as Record<(typeof HUB_ONLY_OPTIONS)[number], string | undefined>
  for (const k of HUB_ONLY_OPTIONS) delete out[k]
  const ids = {
    model: hubIdOf(out.model),
    referenceModel: hubIdOf(out.referenceModel),
    adapter: hubIdOf(out.adapter),
    data: Array.isArray(out.data) ? out.data.map(hubIdOf) : [],
    evalData: Array.isArray(out.evalData) ? out.evalData.map(hubIdOf) : [],
  }
  const anyData = ids.data.some(Boolean) || ids.evalData.some(Boolean)
  // Nothing silently ignored: a Hub-only option needs a Hub id to act on.
  if (hubOnly.modelRevision !== undefined && !ids.model)
    throw new EdpoInputError(`${typed('modelRevision', '--model-revision')}: applies to a Hub model id, but --model ${String(out.model)} is a local folder`)
  if (hubOnly.dataSplit !== undefined && !ids.data.some(Boolean))
    throw new EdpoInputError(`${typed('dataSplit', '--data-split')}: applies to a Hub dataset id in --data (org/name), and --data has none`)
  if (hubOnly.dataConfig !== undefined && !anyData)
    throw new EdpoInputError(`${typed('dataConfig', '--data-config')}: applies to a Hub dataset id in --data (org/name), and --data has none`)
  if (hubOnly.evalDataSplit !== undefined && !ids.evalData.some(Boolean) && !(out.evalData === undefined && ids.data.some(Boolean)))
    throw new EdpoInputError(
      `${typed('evalDataSplit', '--eval-data-split')}: applies to a Hub dataset id (in --eval-data, or in --data when --eval-data is not given)`,
    )
  if (!ids.model && !ids.referenceModel && !ids.adapter && !anyData) return out

  const settings = opts.settings ?? hubSettings()
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'))
  const model = async (id: HubId, flag: string, revision: string | undefined, adapter = false) => {
    checkHubId(id, flag)
    const what = `${flag} ${formatHubId(id)}`
    const snap = await fetchSnapshot(
      { kind: 'model', repo: id.repo, revision: id.revision ?? revision ?? 'main', what },
      adapter ? adapterFiles(what) : modelFiles(what),
      settings,
      log,
    )
    return snap.dir
  }
  const dataset = async (id: HubId, flag: string, split: string) => {
    checkHubId(id, flag)
    const what = `${flag} ${formatHubId(id)} (split ${split})`
    const snap = await fetchSnapshot(
      { kind: 'dataset', repo: id.repo, revision: id.revision ?? 'main', what },
      splitFiles({ split, config: hubOnly.dataConfig, what }),
      settings,
      log,
    )
    log(`${flag} ${formatHubId(id)}: split ${split} is ${snap.files.join(', ')} (commit ${snap.commit.slice(0, 10)})`)
    return snap.files.map((f) => `${snap.dir}/${f}`)
  }
  const datasets = async (list: unknown, hub: (HubId | undefined)[], flag: string, split: string) => {
    const files: string[] = []
    for (let i = 0; i < hub.length; i++) files.push(...(hub[i] ? await dataset(hub[i]!, flag, split) : [(list as string[])[i]!]))
    return files
  }

  if (ids.model) out.model = await model(ids.model, typed('model', '--model'), hubOnly.modelRevision)
  if (ids.referenceModel) out.referenceModel = await model(ids.referenceModel, typed('referenceModel', '--reference-model'), undefined)
  if (ids.adapter) out.adapter = await model(ids.adapter, typed('adapter', '--adapter'), undefined, true)
  const trainSplit = hubOnly.dataSplit ?? opts.defaultDataSplit ?? 'train'
  // TRL's dataset_test_split: the same dataset's other split feeds evaluation.
  if (out.evalData === undefined && hubOnly.evalDataSplit !== undefined) {
    const hub = ids.data.map((id) => (id ? id : undefined)).filter((id): id is HubId => id !== undefined)
    const evalFiles: string[] = []
    for (const id of hub) evalFiles.push(...(await dataset(id, typed('evalDataSplit', '--eval-data-split'), hubOnly.evalDataSplit)))
    out.evalData = evalFiles
  } else if (ids.evalData.some(Boolean))
    out.evalData = await datasets(out.evalData, ids.evalData, typed('evalData', '--eval-data'), hubOnly.evalDataSplit ?? 'test')
  if (ids.data.some(Boolean)) out.data = await datasets(out.data, ids.data, typed('data', '--data'), trainSplit)
  return out
}

/**
 * resolveHubOptions on every rank of a process group: rank 0 downloads, the others wait and then
 * find everything in the cache (offline), so no two processes write the same blob.
 */
export async function resolveHubOptionsOnRanks(
  options: Record<string, unknown>,
  group: { rank: number; barrier(): Promise<void> } | undefined,
  opts: ResolveHubOptions = {},
): Promise<Record<string, unknown>> {
  if (!group) return resolveHubOptions(options, opts)
  if (group.rank === 0) {
    const out = await resolveHubOptions(options, opts)
    await group.barrier()
    return out
  }
  await group.barrier()
  return resolveHubOptions(options, { ...opts, log: () => {}, settings: { ...(opts.settings ?? hubSettings()), offline: true } })
}
