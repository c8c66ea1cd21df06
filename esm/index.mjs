// ESM entry: the CommonJS build, re-exported by name (types: dist/lib/index.d.ts).
import edpo from '../dist/lib/index.js'

export const {
  Tensor,
  ops,
  io,
  data,
  evaluation,
  runtime,
  setThreads,
  CausalLM,
  llamaConfigSchema,
  mistralConfigSchema,
  qwen2ConfigSchema,
  gemma2ConfigSchema,
  Trainer,
  TrainerState,
  AdamW,
  TRAIN_OPTIONS,
  trainConfigSchema,
  EdpoError,
  EdpoInputError,
  EdpoNativeError,
  EdpoTrainingError,
} = edpo
export default edpo
