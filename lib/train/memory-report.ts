// The memory report (EDPO_MEMORY_REPORT=1): where a training step's bytes are. Live tensor bytes
// are split into the policy's and the reference's weights, the optimizer's fp32 master weights and
// moments, the gradients, the activations (what a forward keeps for its backward), the temporaries
// (the step's peak above all that) and other (live tensors that are none of these);
// beside them the allocator's totals, glibc's heaps and the process's RSS. Storage shared between
// tensors (a tied lm_head, a reference that aliases the policy) counts once, in the first category.
// The engine adds it to metrics.jsonl as flat `memory/<field>_bytes` entries. The allocator's
// counts (tensors, peak_tensors, temporaries, other) cover CPU tensors only; the owners'
// categories count their storage on whatever device it is. On a GPU, the device_* fields are CUDA's
// caching allocator's, and activations are measured there.
import * as fs from 'node:fs'

import { native } from '../core/errors'
import { deviceMemory, memoryStats, resetDeviceMemoryPeak, resetPeakTensorBytes } from '../core/memory'
import { nativeAddon, type NativeTensor } from '../core/native'
import type { Tensor } from '../core/tensor'
import type { Metrics } from './metrics-log'

/** One report, in bytes. */
export interface MemoryReport {
  policy_weights: number
  reference_weights: number
  master_weights: number
  optimizer_moments: number
  gradients: number
  /**
   * This rank's gradient bytes at their peak in the step: the full set after the backward, or with
   * the reducer (several ranks, --grad-overlap) its count over the last backward, gradients plus
   * the buckets it holds. At ZeRO-2 that stays near the owned share plus the buckets in flight.
   */
  peak_gradients: number
  /** The largest micro-batch's forward: live tensor bytes after it minus before it (what autograd keeps for the backward). */
  activations: number
  /** Peak live tensor bytes above the state and activations: op temporaries (the backward's, the optimizer's). */
  temporaries: number
  /** Live tensors that are none of the above. */
  other: number
  /** The allocator's view: CPU tensor bytes live now, and at the peak since the last report. */
  tensors: number
  peak_tensors: number
  /** Linux: freed large tensor blocks the addon's allocator keeps mapped for reuse (live + cached stays under the peak of live tensor bytes). */
  tensor_cache?: number
  /** glibc: bytes its heaps hold, and how many of them are free (freed but not given back). */
  heap?: number
  heap_free?: number
  /** Resident set size now, and its peak since the last report (the whole run when the kernel's peak cannot be reset). */
  rss: number
  peak_rss: number
  /** A GPU run: the device's tensor bytes now and at their peak in the step, and what its allocator holds (now, peak). */
  device_tensors?: number
  device_peak_tensors?: number
  device_reserved?: number
  device_peak_reserved?: number
}

/** @internal What the report looks at; `grads` are the parameters' gradients at the time of the report. */
export interface MemoryOwners {
  policy: Iterable<Tensor>
  reference?: Iterable<Tensor>
  optimizerState: Record<string, Tensor>
  grads: Iterable<Tensor>
  /** The step's peak of gradient bytes, as the caller measured it (default: `grads` now). */
  peakGradients?: number
  /** Measured by the caller around the forward (see MemoryReport.activations). */
  activations: number
  /** The run's device ('cpu', 'cuda', 'cuda:N'): other than the CPU, its allocator's counts join the report. */
  device?: string
}

/** True when EDPO_MEMORY_REPORT asks for the report ('1', 'true' or 'yes'). */
export function memoryReportEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(env.EDPO_MEMORY_REPORT ?? '')
}

function statusBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

/**
 * Starts a report window: the allocator's peak (and a GPU's, for a run on one) and (where the
 * kernel allows writing /proc/self/clear_refs) the RSS peak restart from now.
 */
export function resetMemoryPeaks(device = 'cpu'): void {
  resetPeakTensorBytes()
  if (device !== 'cpu') resetDeviceMemoryPeak(device)
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5')
  } catch {
    // Not Linux, or not allowed: peak_rss is then the peak since the process started.
  }
}

/** @internal The report for `owners` now (live bytes) and since the last resetMemoryPeaks() (peaks). */
export function memoryReport(owners: MemoryOwners): MemoryReport {
  const addon = nativeAddon()
  const seen: NativeTensor[] = []
  // Each category's bytes are those its tensors add to the storages already counted.
  const add = (tensors: Iterable<Tensor>): number => {
    const before = seen.length > 0 ? native(() => addon.storageBytes(seen)) : 0
    for (const t of tensors) seen.push(t.handle)
    return native(() => addon.storageBytes(seen)) - before
  }
  const state = owners.optimizerState
  const masters = Object.keys(state)
    .filter((k) => k.startsWith('master.'))
    .map((k) => state[k]!)
  const moments = Object.keys(state)
    .filter((k) => !k.startsWith('master.'))
    .map((k) => state[k]!)
  const policy = add(owners.policy)
  const reference = add(owners.reference ?? [])
  const master = add(masters)
  const momentBytes = add(moments)
  const grads = add(owners.grads)
  const stats = memoryStats()
  const known = policy + reference + master + momentBytes + grads
  return {
    policy_weights: policy,
    reference_weights: reference,
    master_weights: master,
    optimizer_moments: momentBytes,
    gradients: grads,
    peak_gradients: Math.max(grads, owners.peakGradients ?? 0),
    activations: owners.activations,
    temporaries: Math.max(0, stats.peakTensorBytes - known - owners.activations),
    other: Math.max(0, stats.tensorBytes - known),
    tensors: stats.tensorBytes,
    peak_tensors: stats.peakTensorBytes,
    ...(stats.cachedBytes !== undefined ? { tensor_cache: stats.cachedBytes } : {}),
    ...(stats.heapBytes !== undefined ? { heap: stats.heapBytes, heap_free: stats.heapFreeBytes ?? 0 } : {}),
    rss: statusBytes('VmRSS'),
    peak_rss: statusBytes('VmHWM'),
    ...(owners.device !== undefined && owners.device !== 'cpu' ? deviceFields(owners.device) : {}),
  }
}

function deviceFields(device: string): Pick<MemoryReport, 'device_tensors' | 'device_peak_tensors' | 'device_reserved' | 'device_peak_reserved'> {
  const d = deviceMemory(device)
  return {
    device_tensors: d.tensorBytes,
    device_peak_tensors: d.peakTensorBytes,
    ...(d.reservedBytes !== undefined ? { device_reserved: d.reservedBytes } : {}),
    ...(d.peakReservedBytes !== undefined ? { device_peak_reserved: d.peakReservedBytes } : {}),
  }
}

/** Tensor bytes live now on `device` (the CPU's counting allocator, or the GPU's): what a forward leaves is measured with it. */
export function liveTensorBytes(device: string): number {
  return device === 'cpu' ? memoryStats().tensorBytes : deviceMemory(device).tensorBytes
}

/** Bytes of the storage behind `params`' gradients now (each storage once). */
export function gradientBytes(params: Iterable<Tensor>): number {
  const grads = [...params].flatMap((p) => p.grad ?? [])
  const bytes = grads.length > 0 ? native(() => nativeAddon().storageBytes(grads.map((g) => g.handle))) : 0
  for (const g of grads) g.dispose()
  return bytes
}

/** The report as metrics.jsonl fields: memory/<field>_bytes. */
export function memoryMetrics(r: MemoryReport): Metrics {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [`memory/${k}_bytes`, v as number]))
}
