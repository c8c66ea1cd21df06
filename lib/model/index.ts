export {
  CausalLM,
  type ModelDtype,
  type FromPretrainedOptions,
  type ForwardOptions,
  type ForwardResult,
  type GenerateOptions,
  type SaveOptions,
} from './causal-lm'
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
