// --resume across optimizer layouts (issue #25). ZeRO-3 on N ranks of a process group (N = 1
// included: --nproc-per-node 1 shards into one chunk) writes its optimizer state as it holds it:
// per rank, one flat chunk of each gather unit ("exp_avg.zero3.<unit>", …; the unit's tensors
// flattened in its order, padded to a multiple of N). ZeRO-0/1/2 (and ZeRO-3 in one process
// without a group, which shards nothing: optimizer.safetensors) write it by parameter name.
// Both formats stay, so a resume in the layout that wrote a checkpoint remains a plain copy of its
// file (bit-exact), and only a resume across layouts converts, one gather unit and one kind of
// state (m, v, master) at a time: every rank rebuilds that unit's whole flat state (the saved chunks concatenated less their
// padding, or the named tensors flattened in the unit's order), takes what it now holds (the
// named tensors it owns, or its chunk of the unit padded for the new world size) and drops the
// rest. No rank ever holds more than one unit's state beside its own.
import * as path from 'node:path'

import { EdpoInputError, native } from '../core/errors'
import { nativeAddon } from '../core/native'
import { Tensor } from '../core/tensor'
import { readSafetensorsHeader, readSafetensorsInBatches, type SafetensorsEntry } from '../io'
import type { CausalLM } from '../model/causal-lm'
import type { AdamW } from '../train/adamw'
import { OPTIMIZER_FILE, optimizerFiles, optimizerStateFiles } from './optimizer-shards'

/** One gather unit: its name ("zero3.<unit>") and its tensors in the order its flat buffer holds them. */
export interface GatherUnit {
  name: string
  tensors: { name: string; shape: number[]; numel: number }[]
  numel: number
}

/** The gather units of `model` (sharded, or as ZeRO-3 would shard it), as csrc/dist/layer_shards.cc lays them out. */
export function unitLayout(model: CausalLM): GatherUnit[] {
  const l = native(() => nativeAddon().distUnitLayout(model.nativeHandle))
  let name = 0
  let dim = 0
  return l.units.map((unit, u) => {
    const tensors = Array.from({ length: l.counts[u]! }, () => {
      const rank = l.shapes[dim++]!
      const shape = Array.from(l.shapes.subarray(dim, dim + rank))
      dim += rank
      return { name: l.names[name++]!, shape, numel: shape.reduce((a, b) => a * b, 1) }
    })
    return { name: unit, tensors, numel: tensors.reduce((a, t) => a + t.numel, 0) }
  })
}

/** Where a layout keeps a unit's state: by parameter name, or as chunk `rank` of `world` flat chunks. */
export type StateLayout = { kind: 'named' } | { kind: 'chunks'; rank: number; world: number }

/**
 * The optimizer state of checkpoint `dir` into `optimizer`, whatever layout wrote it: the stored
 * ZeRO stage and the number of optimizer files say how it was written, `now` how this run holds it.
 * Missing optimizer files are named first.
 */
export function resumeOptimizerState(
  optimizer: AdamW,
  dir: string,
  model: CausalLM,
  saved: { stage: number },
  now: { stage: number; rank: number; world: number; sharded: boolean },
  stepCount: number,
): void {
  const found = optimizerFiles(dir)
  if ('problem' in found) throw new EdpoInputError(`--resume ${dir}: ${found.problem}`)
  const savedWorld = found.files[0] === OPTIMIZER_FILE ? 1 : found.files.length
  // Chunks wherever ZeRO-3 ran in a group, a group of one too: its files are per rank, not optimizer.safetensors.
  const before = saved.stage === 3 && found.files[0] !== OPTIMIZER_FILE
  const after = now.stage === 3 && now.sharded
  if (before === after && (!before || savedWorld === now.world)) {
    // The same format (by name, or chunks over as many ranks): each rank reads its entries as saved.
    optimizer.loadStateFiles(optimizerStateFiles(dir, now.rank, now.world, now.sharded), stepCount)
    return
  }
  reshardState(
    optimizer.stateTensors(),
    found.files.map((f) => path.join(dir, f)),
    before ? { kind: 'chunks', rank: 0, world: savedWorld } : { kind: 'named' },
    after ? { kind: 'chunks', rank: now.rank, world: now.world } : { kind: 'named' },
    unitLayout(model),
  )
  optimizer.stepCount = stepCount
}

/**
 * Copies the state saved in `files` (in layout `from`; its chunks one file per rank, in rank
 * order) into `slots` (AdamW.stateTensors(): "<kind>.<name>", the names those of layout `to`),
 * unit by unit. Every slot must be filled; a missing or ill-shaped tensor names its file.
 * @internal Exported for test/dist-zero3-resume.test.ts.
 */
export function reshardState(
  slots: Readonly<Record<string, Tensor>>,
  files: readonly string[],
  from: StateLayout,
  to: StateLayout,
  units: readonly GatherUnit[],
): void {
  const headers = files.map((file) => ({ file, tensors: readSafetensorsHeader(file).tensors }))
  if (from.kind === 'chunks' && headers.length !== from.world) throw new Error(`reshardState: ${headers.length} files for ${from.world} ranks`)
  const kinds = [...new Set(Object.keys(slots).map((k) => k.slice(0, k.indexOf('.'))))]
  const filled = new Set<string>()
  for (const unit of units)
    for (const kind of kinds) {
      const keys = to.kind === 'chunks' ? [`${kind}.${unit.name}`] : unit.tensors.map((t) => `${kind}.${t.name}`)
      const held = keys.find((k) => Object.hasOwn(slots, k))
      if (held === undefined) continue
      // A unit's tensors share one dtype (layer_shards.cc checks), so its state does too.
      const dtype = slots[held]!.dtype
      const flat = from.kind === 'chunks' ? readChunks(headers, unit, kind, dtype) : readNamed(headers, unit, kind, dtype)
      try {
        if (to.kind === 'chunks') {
          const chunk = Math.ceil(unit.numel / to.world)
          const start = to.rank * chunk
          // This rank's chunk of the unit padded to chunk × world: the saved elements in it, then zeros.
          const real = Math.max(0, Math.min(chunk, unit.numel - start))
          const pieces = [flat.narrow(0, Math.min(start, unit.numel), real)]
          if (real < chunk) pieces.push(Tensor.zeros([chunk - real], { dtype: flat.dtype, device: flat.device }))
          const mine = Tensor.cat(pieces)
          for (const p of pieces) p.dispose()
          fill(slots, keys[0]!, mine, filled)
          mine.dispose()
        } else {
          let offset = 0
          unit.tensors.forEach((t, i) => {
            if (Object.hasOwn(slots, keys[i]!)) {
              const piece = flat.narrow(0, offset, t.numel)
              const shaped = piece.reshape(t.shape)
              fill(slots, keys[i]!, shaped, filled)
              shaped.dispose()
              piece.dispose()
            }
            offset += t.numel
          })
        }
      } finally {
        flat.dispose()
      }
    }
  const left = Object.keys(slots).filter((k) => !filled.has(k))
  if (left.length > 0) throw new EdpoInputError(`${files.join(', ')}: optimizer state: '${left[0]}' belongs to no gather unit of the model`)
}

type Header = { file: string; tensors: Record<string, SafetensorsEntry> }

// A unit's flat state from its chunks, one per file: each ceil(numel / world) long, the last padded.
function readChunks(headers: readonly Header[], unit: GatherUnit, kind: string, dtype: string): Tensor {
  const key = `${kind}.${unit.name}`
  const chunk = Math.ceil(unit.numel / headers.length)
  const chunks = headers.map((h) => {
    const entry = entryOf(h, key, dtype, `ZeRO-3 on ${headers.length} ranks writes one chunk of each gather unit per rank`)
    if (entry.shape.length !== 1 || entry.shape[0] !== chunk)
      throw new EdpoInputError(
        `${h.file}: optimizer state: '${key}' has shape [${entry.shape}], expected [${chunk}] (${unit.numel} elements over ${headers.length} ranks)`,
      )
    return readTensor(h.file, key)
  })
  const all = Tensor.cat(chunks)
  for (const c of chunks) c.dispose()
  const flat = all.narrow(0, 0, unit.numel)
  all.dispose()
  return flat
}

// A unit's flat state from its tensors by name, whichever file holds each.
function readNamed(headers: readonly Header[], unit: GatherUnit, kind: string, dtype: string): Tensor {
  const parts = unit.tensors.map((t) => {
    const key = `${kind}.${t.name}`
    const h = headers.find((x) => Object.hasOwn(x.tensors, key))
    if (!h) throw new EdpoInputError(`${headers.map((x) => x.file).join(', ')}: optimizer state: missing tensor '${key}'`)
    const entry = entryOf(h, key, dtype)
    if (entry.shape.join(',') !== t.shape.join(','))
      throw new EdpoInputError(`${h.file}: optimizer state: '${key}' has shape [${entry.shape}], expected [${t.shape}]`)
    const whole = readTensor(h.file, key)
    const flat = whole.reshape([t.numel])
    whole.dispose()
    return flat
  })
  const flat = Tensor.cat(parts)
  for (const p of parts) p.dispose()
  return flat
}

// The saved dtype must be the state's (what this model's AdamW keeps).
function entryOf(h: Header, key: string, dtype: string, why?: string): SafetensorsEntry {
  if (!Object.hasOwn(h.tensors, key)) throw new EdpoInputError(`${h.file}: optimizer state: missing tensor '${key}'${why ? ` (${why})` : ''}`)
  const entry = h.tensors[key]!
  if (entry.dtype !== dtype) throw new EdpoInputError(`${h.file}: optimizer state: '${key}' is ${entry.dtype}, this run keeps ${dtype}`)
  return entry
}

function readTensor(file: string, key: string): Tensor {
  let out: Tensor | undefined
  readSafetensorsInBatches(file, (batch) => (out = batch[key]), { names: [key] })
  return out!
}

function fill(slots: Readonly<Record<string, Tensor>>, key: string, t: Tensor, filled: Set<string>): void {
  slots[key]!.copyInPlace(t).dispose()
  filled.add(key)
}
