// The addon's handle types, which the generated surface (ops-generated.ts) is written in terms
// of. Types only, importing nothing: the bottom of lib/core's import graph.

/** Element types, named as the TypeScript API spells them. */
export type DType = 'float32' | 'float64' | 'bfloat16' | 'float16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool'

export type HostArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | BigInt64Array | Uint8Array | Uint16Array

/** One native tensor handle (csrc/js_tensor.cc). `op` runs a declared Tensor.op method (TensorOpTypes). */
export interface NativeTensor {
  shape(): number[]
  dtype(): DType
  device(): string
  requiresGrad(): boolean
  setRequiresGrad(value: boolean): void
  grad(): NativeTensor | undefined
  zeroGrad(): void
  backward(): void
  backwardAsync(): Promise<void>
  item(): number | boolean
  toArray(): HostArray
  to(...targets: (string | undefined)[]): NativeTensor
  dispose(): void
  isDisposed(): boolean
  numel(): number
  op(name: string, ...args: unknown[]): NativeTensor
}

/** An opaque handle owning one native CausalLM. */
export type NativeModel = { readonly __nativeModel: unique symbol }

/** An opaque handle owning one c10d process group (csrc/js_dist.cc). */
export type NativeGroup = { readonly __nativeGroup: unique symbol }
/** A gradient reducer (csrc/dist/grad_reducer.h). */
export type NativeReducer = { readonly __nativeReducer: unique symbol }

/** One declared argument, as opDeclarations() returns it. */
export interface ArgDeclaration {
  name: string
  /** An ArgKind of csrc/js_op_table.h, camel-cased ('tensor', 'optionalInteger', 'objectList', ...). */
  kind: string
  doc: string
  default?: number | boolean
  /** The least value a number or integer may take. */
  min?: number
  /** Object kinds: the fields, and the TypeScript interface they make. */
  fields?: ArgDeclaration[]
  typeName?: string
}

/** The declarations of every addon entry, as opDeclarations() returns them (scripts/gen-op-types.js turns them into ops-generated.ts). */
export interface OpDeclarations {
  ops: {
    name: string
    doc: string
    call: 'object' | 'positional' | 'method'
    mode: 'syncAndAsync' | 'sync' | 'async'
    returns: 'fields' | 'value'
    outputsName?: string
    args: ArgDeclaration[]
    results: { name: string; kind: string; optional: boolean; doc: string }[]
  }[]
  pairRecordColumns: string[]
  inputErrors: { bit: number; message: string }[]
}
