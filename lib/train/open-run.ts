// The first steps of every trainer's create(), before any method-specific work: the config (the
// user's, or the one stored in the checkpoint being resumed), the run folder checked before the
// model loads or the data is tokenized (minutes at 8B), and the checkpoint's trainer_state.json.
import * as fs from 'node:fs'
import * as path from 'node:path'

import type { z } from 'zod'

import type { LoadSftDataOptions } from '../data'
import type { DistGroup } from '../distributed/group'
import { checkZeroStage } from '../distributed/zero3'
import { EdpoInputError } from '../core/errors'
import { CausalLM } from '../model'
import { formatZodError } from '../core/validate'
import type { RunConfig } from './run-options'
import { usesLora } from './lora-options'
import { attachTrainedLora } from './lora-run'
import { MetricsLog } from './metrics-log'
import { HUB_ONLY_OPTIONS } from '../hub/resolve-options'
import { checkDevice, checkModelFolder } from './preflight'
import { flagName } from './option-table'
import { openRunToResume, prepareNewRun } from './run-folder'
import { readTrainerState, type SavedState } from './trainer-state'

export interface CreateOptions {
  /** Continue from the newest checkpoint in this run folder (its stored config is used). */
  resume?: string
  /** Receives data reports and notices; default: standard error. */
  log?: (line: string) => void
  /** Train as one rank of this process group (joinProcessGroup); rank 0 writes the run folder. */
  dist?: DistGroup
}

/** A run about to start or continue: its config, the checkpoint resumed from, where notices go. */
export interface Run<C, S = object> {
  config: C
  resumed: { dir: string; file: SavedState<Record<string, unknown>> & S } | undefined
  log: (line: string) => void
  /** The process group when this is one rank of several. */
  dist?: DistGroup
  /** A rank other than 0: it reads the run folder but writes nothing of the run's own files. */
  follower?: boolean
}

export interface RunKind<C> {
  config: z.ZodType<C>
  /** The trainer_state.json fields of the method `config` runs (e.g. {beta} or {kind: 'sft'}), checked on resume. */
  state(config: C): z.ZodRawShape
  /** A stored config as this version reads it (e.g. without the other methods' options an older version filled in). */
  stored?(config: Record<string, unknown>): Record<string, unknown>
  /** Names the kind of checkpoint in errors about its trainer_state.json. */
  what?: string
  /** Whether the method `config` runs moves its reference (TR-DPO); checked against the ZeRO stage. */
  movingReference?(config: C): boolean
}

export function openRun<C extends RunConfig, S extends object>(kind: RunKind<C>, input: { overwriteOutputDir?: boolean }, opts: CreateOptions): Run<C, S> {
  const follower = opts.dist !== undefined && opts.dist.rank !== 0
  // Rank 0 speaks for the run; the others' notices would repeat it.
  const log = follower ? () => {} : (opts.log ?? ((line: string) => process.stderr.write(line + '\n')))
  if (opts.resume !== undefined && input.overwriteOutputDir)
    throw new EdpoInputError(`--resume ${opts.resume} continues a run; --overwrite-output-dir starts over: give one of them`)
  const from = opts.resume !== undefined ? openRunToResume(opts.resume, log) : undefined
  const stored = from ? readTrainerState(from.dir, {}, kind.what).file.config : undefined
  const parsed = kind.config.safeParse(stored ? resumedConfig(kind.stored?.(stored) ?? stored, input, opts.resume!) : input)
  if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'config'))
  const config = parsed.data
  // Hub-only options are used up where Hub ids are resolved (resolveHubOptions); here they would do nothing.
  const unresolved = HUB_ONLY_OPTIONS.filter((k) => (config as Record<string, unknown>)[k] !== undefined)
  if (unresolved.length > 0)
    throw new EdpoInputError(
      `${unresolved.map(flagName).join(', ')}: Hub options; pass the options through resolveHubOptions() (edpo's commands do) before creating a trainer`,
    )
  // The method's own fields, now that the config says which method the checkpoint ran.
  const resumed = from ? (readTrainerState(from.dir, kind.state(config), kind.what) as Run<C, S>['resumed']) : undefined
  // Each rank of a GPU run uses its own device, cuda:LOCAL_RANK; a device the user named otherwise is an error, not ignored.
  const named = /^cuda:(\d+)$/.exec(String((input as { device?: unknown }).device ?? ''))
  if (opts.dist && named && Number(named[1]) !== opts.dist.localRank)
    throw new EdpoInputError(
      `--device ${named[0]}: each rank of a multi-process run uses cuda:LOCAL_RANK (this rank's is cuda:${opts.dist.localRank}); write --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES`,
    )
  if (opts.dist && config.device.startsWith('cuda')) config.device = `cuda:${opts.dist.localRank}`
  if (!opts.dist && config.zeroStage > 0) log(`note: --zero-stage ${config.zeroStage} shards across ranks; with one process it changes nothing`)
  const method = (config as { method?: string }).method
  checkZeroStage({ ...config, method, movingReference: kind.movingReference?.(config) ?? false })
  // A missing device, run folder or model fails now, not after the data loads.
  checkDevice(config.device)
  if (follower) ensureFolderExists(config.out)
  else if (resumed) MetricsLog.truncateAfter(config.out, resumed.file.step, log)
  else prepareNewRun(config.out, config.overwriteOutputDir, log)
  if (!follower) MetricsLog.configure(config.out, reportingOf(config))
  checkModelFolder(config.model, resumed ? `--model (as stored in ${resumed.dir})` : '--model')
  const reference = (config as { referenceModel?: string }).referenceModel
  if (reference !== undefined) checkModelFolder(reference, '--reference-model')
  const adapter = config.adapter
  if (adapter !== undefined && !fs.existsSync(path.join(adapter, 'adapter_config.json')))
    throw new EdpoInputError(`--adapter ${adapter}: no adapter_config.json there (expected a PEFT LoRA adapter folder)`)
  return { config, resumed, log, dist: opts.dist, follower }
}

/**
 * openRun on every rank of a group: rank 0 first (it prepares or repairs the run folder), then the
 * others, which only read it. Without a group, openRun.
 */
export async function openRunOnRanks<C extends RunConfig, S extends object>(
  kind: RunKind<C>,
  input: { overwriteOutputDir?: boolean },
  opts: CreateOptions,
): Promise<Run<C, S>> {
  const group = opts.dist
  if (!group) return openRun<C, S>(kind, input, opts)
  if (group.rank === 0) {
    const run = openRun<C, S>(kind, input, opts)
    await group.barrier()
    return run
  }
  await group.barrier()
  return openRun<C, S>(kind, input, opts)
}

/** --report-to, --logging-dir and --run-name of a config (absent in older stored configs: none). */
function reportingOf(config: object): { reportTo: 'none' | 'tensorboard'; loggingDir?: string; runName?: string } {
  const c = config as { reportTo?: 'none' | 'tensorboard'; loggingDir?: string; runName?: string }
  return { reportTo: c.reportTo ?? 'none', loggingDir: c.loggingDir, runName: c.runName }
}

function ensureFolderExists(dir: string): void {
  if (!fs.existsSync(dir)) throw new EdpoInputError(`--out ${dir}: rank 0 should have created it; do all ranks see the same file system?`)
}

/** Options a resumed run may change: they extend or re-pace the run, not what it trains (ZeRO's optimizer state re-shards: distributed/zero3-resume.ts). */
export const RESUME_EXTENDABLE = ['maxSteps', 'epochs', 'saveEvery', 'evalEvery', 'keepLast', 'logEvery', 'zeroStage', 'gradOverlap', 'bucketMb'] as const

/**
 * The stored config of a resumed run with the user's extensions applied. Any other option the user
 * gives must equal the stored one: a silent difference would train something else than asked.
 * A longer run recomputes the learning-rate schedule over its new total of steps.
 */
function resumedConfig(stored: Record<string, unknown>, input: object, dir: string): Record<string, unknown> {
  const extended: Record<string, unknown> = {}
  const differs: string[] = []
  for (const [name, value] of Object.entries(input)) {
    if (value === undefined || name === 'out' || name === 'overwriteOutputDir') continue
    if ((RESUME_EXTENDABLE as readonly string[]).includes(name)) extended[name] = value
    else if (JSON.stringify(stored[name]) !== JSON.stringify(value))
      differs.push(`${flagName(name)} ${JSON.stringify(value)} (the run has ${JSON.stringify(stored[name])})`)
  }
  if (differs.length > 0)
    throw new EdpoInputError(
      `--resume ${dir}: a resumed run keeps its stored options; these differ: ${differs.join('; ')}. ` +
        `Only ${RESUME_EXTENDABLE.map(flagName).join(', ')} may change on resume; for other changes start a new run with another --out.`,
    )
  return { ...stored, ...extended, out: dir }
}

/** The model a run trains: the checkpoint's when resuming, else config.model; with LoRA, the base with the run's adapters. */
export async function loadTrainedModel(run: Run<RunConfig>): Promise<CausalLM> {
  const { config: c, resumed } = run
  if (usesLora(c)) {
    run.log(`loading the base model from ${c.model} (${c.dtype}, ${c.device}, frozen) …`)
    const model = await CausalLM.fromPretrained(c.model, { dtype: c.dtype, device: c.device, trainable: false })
    await attachTrainedLora(model, c, resumed?.dir)
    return model
  }
  const dir = resumed ? resumed.dir : c.model
  // At 8B a load takes minutes: say what is happening.
  run.log(`loading the model from ${dir} (${c.dtype}, ${c.device}) …`)
  return CausalLM.fromPretrained(dir, { dtype: c.dtype, device: c.device })
}

/** Loader options for a run: its files, split, truncation and seed; skipped rows go to invalid-rows.jsonl in the run folder. */
export function dataOptions(run: Run<RunConfig>): LoadSftDataOptions {
  const c = run.config
  run.log(`reading and tokenizing ${[...c.data, ...(c.evalData ?? [])].join(', ')} …`)
  const { data, evalData, evalFraction, maxLength, maxPromptLength, maxCompletionLength, truncationMode, skipInvalid, seed } = c
  return {
    data,
    evalData,
    evalFraction,
    maxLength,
    maxPromptLength,
    maxCompletionLength,
    truncationMode,
    skipInvalid,
    seed,
    tokenizer: c.model,
    invalidRowsFile: run.follower ? undefined : path.join(c.out, 'invalid-rows.jsonl'),
    log: run.log,
  }
}
