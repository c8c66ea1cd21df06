// Tensor: a typed facade over one native libtorch tensor handle.
import { z } from 'zod'

import { EdpoInputError, native, nativeAsync } from './errors'
import { type DType, type HostArray, type NativeTensor, nativeAddon } from './native'
import type { TensorOpTypes } from './ops-generated'
import { formatZodError } from './validate'

export type { DType, HostArray } from './native'

/** Arrays accepted by Tensor.from; the tensor's dtype defaults to the array's own type. */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array

export interface TensorOptions {
  dtype?: DType
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string
  requiresGrad?: boolean
}

const dtypeSchema = z.enum(['float32', 'float64', 'bfloat16', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'])
/** 'cpu', 'cuda' or 'cuda:N': every device string edpo accepts. @internal */
export const DEVICE_PATTERN = /^(cpu|cuda(:\d+)?)$/
const deviceSchema = z.string().regex(DEVICE_PATTERN, "expected 'cpu', 'cuda' or 'cuda:N'")
const shapeSchema = z.array(z.number().int().nonnegative())
const optionsSchema = z.object({ dtype: dtypeSchema.optional(), device: deviceSchema.optional(), requiresGrad: z.boolean().optional() }).strict().optional()
// full/zeros/randn make leaves without gradients: a requiresGrad option would be ignored, so it is refused.
const factoryOptionsSchema = z.object({ dtype: dtypeSchema.optional(), device: deviceSchema.optional() }).strict().optional()

function isTensorData(v: unknown): v is TensorData {
  return v instanceof Float32Array || v instanceof Float64Array || v instanceof Int32Array || v instanceof BigInt64Array || v instanceof Uint8Array
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new EdpoInputError(formatZodError(r.error, what))
  return r.data
}

/**
 * Why `value` cannot be passed as a Tensor argument, or undefined when it can: not a Tensor, a
 * Tensor-shaped object without a native handle (`Object.create(Tensor.prototype)`, a handle from
 * another addon instance), or a disposed one.
 * @internal
 */
export function tensorProblem(value: unknown): string | undefined {
  if (!(value instanceof Tensor)) return 'expected a Tensor'
  const state = handleState((value as { handle?: unknown }).handle)
  if (state === 'foreign') return 'expected a Tensor, got one without a native tensor handle'
  return state === 'disposed' ? 'the tensor was disposed' : undefined
}

// An object can inherit NativeTensor.prototype without wrapping a tensor (or come from another
// addon instance); V8 then refuses the method call with a bare "Illegal invocation".
function handleState(handle: unknown): 'live' | 'disposed' | 'foreign' {
  if (!(handle instanceof nativeAddon().NativeTensor)) return 'foreign'
  try {
    return (handle as NativeTensor).isDisposed() ? 'disposed' : 'live'
  } catch {
    return 'foreign'
  }
}

/** zod schema for a live Tensor argument (see tensorProblem). @internal */
export const liveTensorSchema = z.custom<Tensor>((v) => tensorProblem(v) === undefined, {
  error: (issue) => tensorProblem(issue.input) ?? 'expected a Tensor',
})

// The tensors made inside each running Tensor.tidy(), innermost last.
const scopes: Set<Tensor>[] = []

/** The tensors in `value`: itself, or those in an array or an object's values (one level deep). */
function kept(value: unknown): Set<Tensor> {
  const out = new Set<Tensor>()
  const add = (v: unknown) => {
    if (v instanceof Tensor) out.add(v)
  }
  add(value)
  if (Array.isArray(value)) value.forEach(add)
  else if (value !== null && typeof value === 'object' && !(value instanceof Tensor)) Object.values(value).forEach(add)
  return out
}

/** A libtorch tensor. Create with Tensor.from / full / zeros / randn; free early with dispose(). */
export class Tensor {
  /** @internal */
  readonly handle: NativeTensor

  /** @internal Wraps a native handle; use the static factories instead. */
  constructor(handle: NativeTensor) {
    this.handle = handle
    scopes[scopes.length - 1]?.add(this)
  }

  /** Disposes each tensor given, and each tensor among an object's values (a batch, an op's results); other values are skipped. */
  static disposeAll(...values: unknown[]): void {
    for (const v of values) for (const t of kept(v)) t.dispose()
  }

  /**
   * Runs the synchronous `fn` and disposes every tensor made inside it except those it returns
   * (a tensor, or tensors in an array or an object's values): a loss's intermediates, which would
   * otherwise keep their autograd graph, and through it the parameters, until a garbage collection.
   */
  static tidy<T>(fn: () => T): T {
    const scope = new Set<Tensor>()
    scopes.push(scope)
    let result: T
    try {
      result = fn()
    } finally {
      scopes.pop()
    }
    if (result instanceof Promise) throw new EdpoInputError('Tensor.tidy: fn must be synchronous')
    const keep = kept(result)
    const outer = scopes[scopes.length - 1]
    for (const t of scope) {
      if (keep.has(t)) outer?.add(t)
      else t.dispose()
    }
    return result
  }

  /** Copies `data` into a new tensor of `shape`; converts when `opts.dtype` differs from the array's type. */
  static from(data: TensorData, shape: readonly number[], opts?: TensorOptions): Tensor {
    if (!isTensorData(data)) throw new EdpoInputError('data: expected Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array')
    const dims = parse(shapeSchema, shape, 'shape')
    const o = parse(optionsSchema, opts, 'opts')
    const numel = dims.reduce((a, b) => a * b, 1)
    if (numel !== data.length) throw new EdpoInputError(`data: has ${data.length} elements but shape [${dims.join(', ')}] needs ${numel}`)
    if (o?.requiresGrad && !['float32', 'float64', 'bfloat16', 'float16'].includes(o.dtype ?? defaultDtype(data)))
      throw new EdpoInputError('opts.requiresGrad: only floating-point tensors can require gradients')
    return new Tensor(native(() => nativeAddon().fromArray(data, dims, o?.dtype, o?.device, o?.requiresGrad ?? false)))
  }

  static full(shape: readonly number[], value: number, opts?: Omit<TensorOptions, 'requiresGrad'>): Tensor {
    const dims = parse(shapeSchema, shape, 'shape')
    const o = parse(factoryOptionsSchema, opts, 'opts')
    return new Tensor(native(() => nativeAddon().full(dims, value, o?.dtype, o?.device)))
  }

  static zeros(shape: readonly number[], opts?: Omit<TensorOptions, 'requiresGrad'>): Tensor {
    return Tensor.full(shape, 0, opts)
  }

  /** Standard normal samples from libtorch's global generator (seed it with Tensor.manualSeed). */
  static randn(shape: readonly number[], opts?: Omit<TensorOptions, 'requiresGrad'>): Tensor {
    const dims = parse(shapeSchema, shape, 'shape')
    const o = parse(factoryOptionsSchema, opts, 'opts')
    return new Tensor(native(() => nativeAddon().randn(dims, o?.dtype, o?.device)))
  }

  static manualSeed(seed: number): void {
    native(() => nativeAddon().manualSeed(seed))
  }

  static cat(tensors: readonly Tensor[], dim = 0): Tensor {
    return new Tensor(native(() => nativeAddon().cat(handles(tensors), dim)))
  }

  static stack(tensors: readonly Tensor[], dim = 0): Tensor {
    return new Tensor(native(() => nativeAddon().stack(handles(tensors), dim)))
  }

  /** This tensor's native handle; a Tensor-shaped object without one is rejected by name. */
  private get h(): NativeTensor {
    const handle: unknown = (this as { handle?: unknown }).handle
    if (handleState(handle) === 'foreign')
      throw new EdpoInputError('tensor: not a Tensor with a native handle (create tensors with Tensor.from/full/zeros/randn)')
    return handle as NativeTensor
  }

  get shape(): number[] {
    return native(() => this.h.shape())
  }
  get dtype(): DType {
    return native(() => this.h.dtype())
  }
  get device(): string {
    return native(() => this.h.device())
  }
  get numel(): number {
    return native(() => this.h.numel())
  }
  get requiresGrad(): boolean {
    return native(() => this.h.requiresGrad())
  }
  set requiresGrad(value: boolean) {
    native(() => this.h.setRequiresGrad(value))
  }
  /** The accumulated gradient, or undefined before any backward(). */
  get grad(): Tensor | undefined {
    const g = native(() => this.h.grad())
    return g === undefined ? undefined : new Tensor(g)
  }
  get disposed(): boolean {
    return this.h.isDisposed()
  }

  zeroGrad(): void {
    native(() => this.h.zeroGrad())
  }
  /** Backpropagates from this (scalar) tensor into every leaf that requires grad. */
  backward(): void {
    native(() => this.h.backward())
  }
  /** backward() on the thread pool, leaving the JS thread free. */
  backwardAsync(): Promise<void> {
    return nativeAsync(() => this.h.backwardAsync())
  }
  /** The single value of a one-element tensor. */
  item(): number {
    return Number(native(() => this.h.item()))
  }
  /**
   * A host copy of the values: Float32Array, Float64Array, BigInt64Array (int64), Int32Array,
   * Uint8Array (uint8, bool); bfloat16/float16 come back as raw Uint16Array bits, so read them
   * with `.to('float32').toArray()`.
   */
  toArray(): HostArray {
    return native(() => this.h.toArray())
  }
  /** Converts to a dtype and/or moves to a device: to('float32'), to('cuda'), to('bfloat16', 'cuda:0'). */
  to(target: DType | string, device?: string, ...extra: never[]): Tensor {
    if (extra.length > 0) throw new EdpoInputError(`to: expected at most two arguments (dtype, device), got ${2 + extra.length}`)
    return new Tensor(native(() => this.h.to(target, device)))
  }
  /** Frees the storage now instead of at garbage collection; the tensor is unusable after. */
  dispose(): void {
    this.h.dispose()
  }

  /** A declared Tensor.op method (csrc/js_tensor_ops.cc) on this tensor. */
  private op<N extends keyof TensorOpTypes<Tensor>>(name: N, ...args: TensorOpTypes<Tensor>[N]): Tensor {
    // A Tensor without a native handle reaches native code as itself and is rejected there by name.
    const unwrapped = (args as unknown[]).map((a) => (a instanceof Tensor && handleState((a as { handle?: unknown }).handle) !== 'foreign' ? a.handle : a))
    return new Tensor(native(() => this.h.op(name, ...unwrapped)))
  }

  add(other: Tensor | number): Tensor {
    return this.op('add', other)
  }
  sub(other: Tensor | number): Tensor {
    return this.op('sub', other)
  }
  mul(other: Tensor | number): Tensor {
    return this.op('mul', other)
  }
  div(other: Tensor | number): Tensor {
    return this.op('div', other)
  }
  pow(other: Tensor | number): Tensor {
    return this.op('pow', other)
  }
  gt(other: Tensor | number): Tensor {
    return this.op('gt', other)
  }
  lt(other: Tensor | number): Tensor {
    return this.op('lt', other)
  }
  eq(other: Tensor | number): Tensor {
    return this.op('eq', other)
  }
  logicalAnd(other: Tensor): Tensor {
    return this.op('logicalAnd', other)
  }
  neg(): Tensor {
    return this.op('neg')
  }
  exp(): Tensor {
    return this.op('exp')
  }
  log(): Tensor {
    return this.op('log')
  }
  sqrt(): Tensor {
    return this.op('sqrt')
  }
  abs(): Tensor {
    return this.op('abs')
  }
  sigmoid(): Tensor {
    return this.op('sigmoid')
  }
  tanh(): Tensor {
    return this.op('tanh')
  }
  logSigmoid(): Tensor {
    return this.op('logSigmoid')
  }
  isfinite(): Tensor {
    return this.op('isfinite')
  }
  detach(): Tensor {
    return this.op('detach')
  }
  clone(): Tensor {
    return this.op('clone')
  }
  contiguous(): Tensor {
    return this.op('contiguous')
  }
  logSoftmax(dim: number): Tensor {
    return this.op('logSoftmax', dim)
  }
  softmax(dim: number): Tensor {
    return this.op('softmax', dim)
  }
  gather(dim: number, index: Tensor): Tensor {
    return this.op('gather', dim, index)
  }
  /** Sum over `dims` (all when omitted). */
  sum(dims?: number | number[], keepdim = false): Tensor {
    return this.op('sum', dims, keepdim)
  }
  mean(dims?: number | number[], keepdim = false): Tensor {
    return this.op('mean', dims, keepdim)
  }
  amax(dims?: number | number[], keepdim = false): Tensor {
    return this.op('amax', dims, keepdim)
  }
  argmax(dim: number, keepdim = false): Tensor {
    return this.op('argmax', dim, keepdim)
  }
  reshape(shape: readonly number[]): Tensor {
    return this.op('reshape', [...shape])
  }
  transpose(dim0: number, dim1: number): Tensor {
    return this.op('transpose', dim0, dim1)
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return this.op('narrow', dim, start, length)
  }
  unsqueeze(dim: number): Tensor {
    return this.op('unsqueeze', dim)
  }
  squeeze(dim: number): Tensor {
    return this.op('squeeze', dim)
  }
  matmul(other: Tensor): Tensor {
    return this.op('matmul', other)
  }
  /** Elementwise `condition ? this : other`. */
  where(condition: Tensor, other: Tensor): Tensor {
    return this.op('where', condition, other)
  }
  maskedFill(mask: Tensor, value: number): Tensor {
    return this.op('maskedFill', mask, value)
  }
  /** this += alpha·other, in place and outside autograd (optimizer updates). */
  addInPlace(other: Tensor | number, alpha = 1): Tensor {
    return this.op('addInPlace', other, alpha)
  }
  mulInPlace(other: Tensor | number): Tensor {
    return this.op('mulInPlace', other)
  }
  copyInPlace(source: Tensor): Tensor {
    return this.op('copyInPlace', source)
  }
}

function defaultDtype(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32'
  if (data instanceof Float64Array) return 'float64'
  if (data instanceof Int32Array) return 'int32'
  if (data instanceof BigInt64Array) return 'int64'
  return 'uint8'
}

function handles(tensors: readonly Tensor[]): NativeTensor[] {
  if (!Array.isArray(tensors)) throw new EdpoInputError('tensors: expected an array of Tensors')
  return tensors.map((t: unknown, i) => {
    const problem = tensorProblem(t)
    if (problem !== undefined) throw new EdpoInputError(`tensors[${i}]: ${problem}`)
    return (t as Tensor).handle
  })
}
