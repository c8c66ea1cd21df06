/**
 * edpo: ε-DPO (Direct Preference Optimization with an instance-level adaptive KL penalty,
 * arXiv 2502.13177) on libtorch, from TypeScript.
 */
export { Tensor, type DType, type TensorData, type TensorOptions, type HostArray } from './core/tensor'
export * as ops from './core/ops'
export type { EpsilonDpoLossArgs, EpsilonDpoLossFromHiddenArgs, EpsilonDpoLossResult, SequenceLogpsResult } from './core/ops'
export * as io from './io'
export { runtime, setThreads, type RuntimeInfo } from './core/runtime'
export type { NativeRuntime } from './core/native'
export { EdpoError, EdpoInputError, EdpoNativeError } from './core/errors'
export { EdpoFileError } from './train/fs-errors'
export * as data from './data'
export {
  CausalLM,
  type ModelConfig,
  llamaConfigSchema,
  mistralConfigSchema,
  qwen2ConfigSchema,
  gemma2ConfigSchema,
  type LlamaConfig,
  type MistralConfig,
  type Qwen2Config,
  type Gemma2Config,
  type ModelDtype,
  type FromPretrainedOptions,
  type ForwardOptions,
  type ForwardResult,
  type GenerateOptions,
  type SaveOptions,
  type LoadAdapterOptions,
  type SaveAdapterOptions,
  type LoraOptions,
  type LoraSettings,
  type LinearModule,
} from './model'
export { Trainer, EdpoTrainingError, type TrainerEvents, type CreateOptions } from './train/engine'
export { TrainerState } from './train/trainer-state'
export type { Metrics } from './train/metrics-log'
export { AdamW, type AdamWOptions } from './train/adamw'
export { TRAIN_OPTIONS, COMMON_TRAIN_OPTIONS, trainConfigSchema, type TrainConfig, type TrainConfigInput, type CommonTrainConfig } from './train/config'
export { TRAIN_METHODS, type MethodName, type TrainMethod, type TrainMethodOptions } from './train/methods'
export type { BetaState } from './train/methods/preference'
export type { SftSaved } from './train/methods/sft'
export type { OptionShape, OptionSpec, OptionTable, OptionValues, OptionInputs } from './train/option-table'
export * as evaluation from './eval'
export { SftTrainer, type SftTrainerEvents } from './train/engine'
export { SFT_OPTIONS, sftConfigSchema, type SftConfig, type SftConfigInput } from './train/sft-config'
export { resolveHubOptions, HUB_ONLY_OPTIONS, type ResolveHubOptions } from './hub/resolve-options'
export { hubSettings, type HubSettings } from './hub/settings'
export { DistGroup, GradReducer, BUCKET_BYTES, type Backend, type JoinOptions } from './distributed/group'
export type { ReducerStats } from './core/native'
export { readDistEnv, type DistEnv, type Env } from './distributed/env'
export { runDemo, type DemoResult, type DemoHooks, type MethodResult, type Method } from './demo/pipeline'
export { DEMO_OPTIONS, demoSchema, type DemoInput, type DemoConfig } from './demo/config'
