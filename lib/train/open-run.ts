// The first steps of every trainer's create(), before any method-specific work: the config (the
// user's, or the one stored in the checkpoint being resumed), the run folder checked before the
// model loads or the data is tokenized (minutes at 8B), and the checkpoint's trainer_state.json.
import * as path from 'node:path'

import type { z } from 'zod'

import type { LoadSftDataOptions } from '../data'
import { EdpoInputError } from '../errors'
import { CausalLM, type ModelDtype } from '../model'
import { formatZodError } from '../validate'
import { MetricsLog } from './metrics-log'
import { checkDevice, checkModelFolder } from './preflight'
import { openRunToResume, prepareNewRun } from './run-folder'
import { readTrainerState, type SavedState } from './trainer-state'

export interface CreateOptions {
  /** Continue from the newest checkpoint in this run folder (its stored config is used). */
  resume?: string
  /** Receives data reports and notices; default: standard error. */
  log?: (line: string) => void
}

interface RunFolderConfig {
  model: string
  out: string
  overwriteOutputDir: boolean
  dtype: ModelDtype
  device: string
}

/** A run about to start or continue: its config, the checkpoint resumed from, where notices go. */
export interface Run<C, S = object> {
  config: C
  resumed: { dir: string; file: SavedState<Record<string, unknown>> & S } | undefined
  log: (line: string) => void
}

export interface RunKind<C, S extends z.ZodRawShape> {
  config: z.ZodType<C>
  /** The method's own trainer_state.json fields (e.g. {beta} or {kind: 'sft'}). */
  state: S
  /** Names the kind of checkpoint in errors about its trainer_state.json. */
  what?: string
}

export function openRun<C extends RunFolderConfig, S extends z.ZodRawShape>(
  kind: RunKind<C, S>,
  input: { overwriteOutputDir?: boolean },
  opts: CreateOptions,
): Run<C, z.infer<z.ZodObject<S>>> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'))
  if (opts.resume !== undefined && input.overwriteOutputDir)
    throw new EdpoInputError(`--resume ${opts.resume} continues a run; --overwrite-output-dir starts over: give one of them`)
  const from = opts.resume !== undefined ? openRunToResume(opts.resume, log) : undefined
  const resumed = from ? readTrainerState(from.dir, kind.state, kind.what) : undefined
  const parsed = kind.config.safeParse(resumed ? { ...resumed.file.config, out: opts.resume } : input)
  if (!parsed.success) throw new EdpoInputError(formatZodError(parsed.error, 'config'))
  const config = parsed.data
  // A missing device, run folder or model fails now, not after the data loads.
  checkDevice(config.device)
  if (resumed) MetricsLog.truncateAfter(config.out, resumed.file.step, log)
  else prepareNewRun(config.out, config.overwriteOutputDir, log)
  checkModelFolder(config.model, resumed ? `--model (as stored in ${resumed.dir})` : '--model')
  const reference = (config as { referenceModel?: string }).referenceModel
  if (reference !== undefined) checkModelFolder(reference, '--reference-model')
  return { config, resumed, log }
}

/** The model a run trains: the checkpoint's when resuming, else config.model. */
export function loadTrainedModel(run: Run<RunFolderConfig>): Promise<CausalLM> {
  const { config: c, resumed } = run
  return CausalLM.fromPretrained(resumed ? resumed.dir : c.model, { dtype: c.dtype, device: c.device })
}

/** The settings every data loader takes from a run's config (both option tables have them). */
type DataConfig = Pick<RunFolderConfig, 'model' | 'out'> & Omit<LoadSftDataOptions, 'tokenizer' | 'invalidRowsFile' | 'log'>

/** Loader options for a run: its files, split, truncation and seed; skipped rows go to invalid-rows.jsonl in the run folder. */
export function dataOptions(run: Run<DataConfig>): LoadSftDataOptions {
  const c = run.config
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
    invalidRowsFile: path.join(c.out, 'invalid-rows.jsonl'),
    log: run.log,
  }
}
