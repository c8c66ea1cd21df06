// TRL / Hugging Face TrainingArguments keys that are not plain renames of an edpo option: a value
// that maps onto another option (bf16: true → dtype bfloat16), a setting edpo fixes (loss_type:
// sigmoid), and near-misses whose meaning differs ("did you mean …"). Plain renames live in the
// option table itself (OptionSpec.aliases).
import { EdpoInputError } from '../core/errors'

/** A TRL key whose value sets another option: `kind` is how its flag reads a value (a bare
 *  boolean flag, or a value after it); `set` gives the option it sets, or undefined to accept and
 *  drop it (a setting edpo fixes). */
export interface ValueKey {
  kind: 'boolean' | 'string'
  /** [option, value], or [option, value, 'default'] for a value that applies only when the option is not given otherwise (use_peft's lora_r). */
  set(value: unknown, typed: string): [string, unknown] | [string, unknown, 'default'] | undefined
}

const precision = (dtype: string): ValueKey => ({
  kind: 'boolean',
  set: (v, typed) => (v === true ? ['dtype', dtype] : v === false ? undefined : bad(typed, v, 'true or false')),
})

// torch_dtype / dtype as transformers writes them ("auto" reads the model's config: edpo asks for one dtype).
const TORCH_DTYPES: Record<string, string> = {
  bfloat16: 'bfloat16',
  float16: 'float16',
  float32: 'float32',
  float64: 'float64',
  bf16: 'bfloat16',
  fp16: 'float16',
  fp32: 'float32',
}

const TRL_VALUE_KEYS: Record<string, ValueKey> = {
  bf16: precision('bfloat16'),
  fp16: precision('float16'),
  torchDtype: {
    kind: 'string',
    set: (v, typed) => {
      const dtype = typeof v === 'string' ? TORCH_DTYPES[v.replace(/^torch\./, '')] : undefined
      if (dtype) return ['dtype', dtype]
      throw new EdpoInputError(`${typed}: expected bfloat16, float16 or float32, got ${JSON.stringify(v)} (edpo loads the weights in one dtype: --dtype)`)
    },
  },
  // edpo's optimizer is torch's AdamW (decoupled weight decay), in one fused pass.
  optim: {
    kind: 'string',
    set: (v, typed) => {
      if (typeof v === 'string' && /^adamw_torch(_fused)?$/.test(v)) return undefined
      throw new EdpoInputError(`${typed}: edpo trains with AdamW (optim: adamw_torch or adamw_torch_fused), got ${JSON.stringify(v)}: not supported`)
    },
  },
  // TRL ModelConfig: use_peft turns LoRA on with lora_r 16 unless lora_r is given.
  usePeft: {
    kind: 'boolean',
    set: (v, typed) => (v === true ? ['loraR', 16, 'default'] : v === false ? undefined : bad(typed, v, 'true or false')),
  },
  // Seconds a rank waits for the others: edpo's --dist-timeout.
  ddpTimeout: {
    kind: 'string',
    set: (v, typed) => (typeof v === 'number' && v > 0 ? ['distTimeout', String(v)] : bad(typed, v, 'seconds > 0')),
  },
  attnImplementation: {
    kind: 'string',
    set: (v, typed) => {
      // edpo's attention is libtorch's scaled_dot_product_attention (its flash kernels on CUDA where
      // the build has them, the math kernel otherwise): the same function eager and sdpa compute.
      if (v === 'sdpa' || v === 'eager' || v === 'flash_attention_2') return undefined
      throw new EdpoInputError(
        `${typed}: expected sdpa, eager or flash_attention_2 (edpo runs libtorch's SDPA, its flash path where available), got ${JSON.stringify(v)}`,
      )
    },
  },
  trustRemoteCode: {
    kind: 'boolean',
    set: (v, typed) => {
      if (v === false) return undefined
      throw new EdpoInputError(
        `${typed}: refused: edpo runs no code from a model repo (it reads config.json, safetensors and tokenizer.json only); remove it or set it to false`,
      )
    },
  },
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

/** Keys users bring from TRL whose meaning differs from the nearest edpo option, or that edpo cannot honour: what to do instead. */
const ALWAYS = 'remove it: edpo always does this'
const TRL_NEAR_MISSES: Record<string, string> = {
  removeUnusedColumns: `${ALWAYS} (it reads only the prompt/chosen/rejected or messages columns)`,
  dataloaderNumWorkers: `${ALWAYS}: it reads and tokenizes the data once, before training`,
  datasetNumProc: `${ALWAYS}: it reads and tokenizes the data once, before training`,
  tf32: 'not supported: edpo does not switch TF32 on (use --dtype bf16 for speed)',
  pushToHub: 'not supported: upload a checkpoint-<step>/ folder with `huggingface-cli upload` after the run',
  hubModelId: 'not supported: upload a checkpoint-<step>/ folder with `huggingface-cli upload` after the run',
  lrSchedulerKwargs: 'not supported: --lr-scheduler cosine, linear or constant with --warmup-ratio',
  precomputeRefLogProbs: 'not supported: edpo computes the reference log-probs in each step',
  rpoAlpha: 'not supported: edpo trains the DPO-family losses of --method without the NLL term',
  useLigerKernel: `${ALWAYS}: lm_head and the loss are fused and chunked (--chunk-tokens)`,
  generateDuringEval: 'not supported: sample with `edpo generate` or `edpo eval --gold` after the run',
  bf16FullEval: `${ALWAYS}: evaluation runs in the training --dtype`,
  fp16FullEval: `${ALWAYS}: evaluation runs in the training --dtype`,
  deepspeed: 'not supported as a DeepSpeed config: use --zero-stage 1 or 2 (edpo shards the optimizer state / gradients itself) with --nproc-per-node',
  fsdp: 'not supported: use --zero-stage 1 or 2 with --nproc-per-node',
  doTrain: `${ALWAYS} (edpo train trains)`,
  doEval: 'remove it: edpo evaluates when --eval-data or --eval-fraction is given',
  loggingFirstStep: `${ALWAYS} with --log-every 1; otherwise not supported`,
  gradientCheckpointingKwargs: 'not supported: --gradient-checkpointing recomputes each decoder layer (non-reentrant)',
  modelInitKwargs: 'not supported: give --dtype; edpo reads config.json and the safetensors as they are',
  refModelInitKwargs: 'not supported: give --reference-model; it loads in --dtype',
  datasetTextField: 'not supported: edpo reads prompt/chosen/rejected (or messages) columns',
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
