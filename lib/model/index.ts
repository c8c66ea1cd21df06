export {
  CausalLM,
  type ModelDtype,
  type FromPretrainedOptions,
  type ForwardOptions,
  type ForwardResult,
  type GenerateOptions,
  type SaveOptions,
  type LoadAdapterOptions,
  type SaveAdapterOptions,
} from './causal-lm'
export type { LoraOptions, LoraSettings, LinearModule } from './lora'
export {
  parseModelConfig,
  expectedTensors,
  SUPPORTED_MODEL_TYPES,
  type ModelConfig,
  llamaConfigSchema,
  mistralConfigSchema,
  qwen2ConfigSchema,
  gemma2ConfigSchema,
  type LlamaConfig,
  type MistralConfig,
  type Qwen2Config,
  type Gemma2Config,
} from './config'
