// TRL / Hugging Face TrainingArguments keys that are not plain renames of an edpo option: a value
// that maps onto another option (bf16: true → dtype bfloat16), a setting edpo fixes (loss_type:
// sigmoid), and near-misses whose meaning differs ("did you mean …"). Plain renames live in the
// option table itself (OptionSpec.aliases).
import { EdpoInputError } from '../core/errors'

/** A TRL key whose value sets another option: `kind` is how its flag reads a value (a bare
 *  boolean flag, or a value after it); `set` gives the option it sets, or undefined to accept and
 *  drop it (a setting edpo fixes). */
interface ValueKey {
  kind: 'boolean' | 'string'
  set(value: unknown, typed: string): [string, unknown] | undefined
}

const precision = (dtype: string): ValueKey => ({
  kind: 'boolean',
  set: (v, typed) => (v === true ? ['dtype', dtype] : v === false ? undefined : bad(typed, v, 'true or false')),
})

const TRL_VALUE_KEYS: Record<string, ValueKey> = {
  bf16: precision('bfloat16'),
  fp16: precision('float16'),
  lossType: {
    kind: 'string',
    set: (v, typed) => {
      if (v === 'sigmoid') return undefined
      throw new EdpoInputError(
        `${typed}: edpo trains the sigmoid (DPO) loss only, got ${JSON.stringify(v)}; did you mean --method (TRL: loss_type picks the DPO variant; edpo's --method picks epsilon-dpo, dpo or tr-dpo)?`,
      )
    },
  },
}

/** The TRL value key written as `key` (camelCase), if it is one: own keys only, so user text such
 *  as `--to-string` or `constructor:` never reaches Object.prototype. */
export function trlValueKey(key: string): ValueKey | undefined {
  return Object.hasOwn(TRL_VALUE_KEYS, key) ? TRL_VALUE_KEYS[key] : undefined
}

/** The "did you mean" hint for a TRL key whose meaning differs, if `key` is one (own keys only). */
export function trlNearMiss(key: string): string | undefined {
  return Object.hasOwn(TRL_NEAR_MISSES, key) ? TRL_NEAR_MISSES[key] : undefined
}

/** Keys users bring from TRL whose meaning differs from the nearest edpo option. */
const TRL_NEAR_MISSES: Record<string, string> = {
  warmupSteps: 'did you mean --warmup-ratio (TRL: warmup_steps counts steps; edpo takes the fraction of steps)?',
  evalStrategy: 'did you mean --eval-every (TRL: eval_strategy with eval_steps; edpo evaluates every N steps, 0 = at the end)?',
  evaluationStrategy: 'did you mean --eval-every (TRL: evaluation_strategy with eval_steps; edpo evaluates every N steps)?',
  saveStrategy: 'did you mean --save-every (TRL: save_strategy with save_steps; edpo saves every N steps, 0 = at the end)?',
  loggingStrategy: 'did you mean --log-every (TRL: logging_strategy with logging_steps)?',
  perDeviceEvalBatchSize: 'did you mean --batch-size (TRL: per_device_eval_batch_size; edpo evaluates with --batch-size)?',
  refModel: 'did you mean --reference-model (TRL: ref_model is an object; edpo takes a model folder)?',
  syncRefModel: 'did you mean --method tr-dpo (TRL: sync_ref_model turns on TR-DPO; edpo selects it with --method)?',
  maxTargetLength: 'did you mean --max-completion-length (TRL: max_target_length is the encoder-decoder name)?',
}

function bad(typed: string, v: unknown, expected: string): never {
  throw new EdpoInputError(`${typed}: expected ${expected}, got ${JSON.stringify(v)}`)
}
