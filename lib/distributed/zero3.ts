// ZeRO-3 (--zero-stage 3) around the engine: before the optimizer sees any parameter, the policy
// and (by default, --shard-reference) the frozen reference become per-rank shards of their gather
// units (csrc/dist/layer_shards.h), so the optimizer, the gradient norm and the checkpoints' optimizer
// files see only shards ("zero3.<unit>"). A checkpoint's model is gathered one unit at a time:
// every rank gathers, rank 0 writes one file per unit, and no rank holds more than one unit whole.
import { EdpoInputError } from '../core/errors'
import type { CausalLM } from '../model'
import { writeCheckpointStreamed } from '../model/checkpoint-files'
import type { DistGroup } from './group'

/** What ZeRO-3 cannot shard, named by the flags that asked for it (undefined: it can). */
export function zero3Refusal(o: { lora: boolean; method: string; shardReference: boolean }): string | undefined {
  if (o.lora) return '--zero-stage 3 with --lora-r (or --adapter): ZeRO-3 shards full fine-tuning only; LoRA trains at --zero-stage 0-2'
  if (o.method === 'tr-dpo')
    return '--zero-stage 3 with --method tr-dpo: the moving reference is saved whole with each checkpoint, which stage 3 does not do yet; use --zero-stage 2'
  return undefined
}

/**
 * Shards the policy and, with shardReference, the reference over the group (a whole reference
 * otherwise). One process: nothing to shard over.
 */
export function shardForZero3(group: DistGroup | undefined, model: CausalLM, reference: CausalLM | undefined, shardReference: boolean): void {
  if (!group) return
  if (model.lora) throw new EdpoInputError(zero3Refusal({ lora: true, method: '', shardReference })!)
  group.shardModel(model.nativeHandle)
  if (reference && shardReference && reference !== model) group.shardModel(reference.nativeHandle)
}

/**
 * The Hugging Face folder of a sharded model, streamed: unit by unit, each gathered on every rank
 * (call it on all of them), written by the rank with `dir` (the others pass undefined).
 */
export async function saveShardedModel(group: DistGroup, model: CausalLM, dir: string | undefined): Promise<void> {
  const units = model.namedParameters()
  const count = units.size
  const dtype = [...units.values()][0]!.dtype
  for (const t of units.values()) t.dispose()
  const { config, storedTiedHead } = model.checkpointLayout(dtype)
  await writeCheckpointStreamed(
    dir ?? '',
    count,
    async (i) => {
      const tensors = await group.gatherUnit(model.nativeHandle, i)
      // A tied head stored on load is written again, beside the embedding it is.
      const embed = tensors.find(([n]) => n === 'model.embed_tokens.weight')
      if (storedTiedHead && embed) tensors.push(['lm_head.weight', embed[1].detach()])
      return tensors
    },
    config,
    dir !== undefined,
  )
}
