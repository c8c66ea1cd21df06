// ZeRO-3 (--zero-stage 3) around the engine: before the optimizer sees any parameter, the policy
// and (by default, --shard-reference) the frozen reference become per-rank shards of their gather
// units (csrc/dist/layer_shards.h), so the optimizer, the gradient norm and the checkpoints' optimizer
// files see only shards ("zero3.<unit>"). A checkpoint's model is gathered one unit at a time:
// every rank gathers, rank 0 writes one file per unit, and no rank holds more than one unit whole.
// A resume in another layout re-shards the optimizer state: zero3-resume.ts.
import { EdpoInputError } from '../core/errors'
import type { CausalLM } from '../model/causal-lm'
import { writeCheckpointStreamed } from '../model/checkpoint-files'
import type { DistGroup } from './group'

/** Settings ZeRO-3 cannot run, named by their flags; checked before any work. */
export function checkZeroStage(c: {
  zeroStage: number
  shardReference: boolean
  gradOverlap: boolean
  loraR?: number
  adapter?: string
  /** The method's reference follows the policy (TR-DPO). */
  movingReference: boolean
  /** How the user named the method, for the message. */
  method?: string
}): void {
  if (!c.shardReference && c.zeroStage !== 3) throw new EdpoInputError('--no-shard-reference: only ZeRO-3 shards the reference; give --zero-stage 3')
  if (c.zeroStage !== 3) return
  if (!c.gradOverlap)
    throw new EdpoInputError('--no-grad-overlap with --zero-stage 3: ZeRO-3 reduce-scatters each unit during the backward; leave --grad-overlap on')
  if (c.loraR !== undefined || c.adapter !== undefined)
    throw new EdpoInputError(
      `--zero-stage 3 with ${c.loraR !== undefined ? '--lora-r' : '--adapter'}: ZeRO-3 shards full fine-tuning only; LoRA trains at --zero-stage 0-2`,
    )
  // A moving reference (TR-DPO) mixes the policy in shard by shard, which needs both sharded alike.
  if (c.movingReference && !c.shardReference)
    throw new EdpoInputError(
      `--zero-stage 3 with --method ${c.method} and --no-shard-reference: the reference follows the policy shard by shard, so it is sharded like the policy; drop --no-shard-reference`,
    )
}

/**
 * Shards the policy and, with shardReference, the reference over the group (a whole reference
 * otherwise). One process: nothing to shard over. `bucketBytes` (--bucket-mb) caps the policy's
 * gradient reduce-scatters in flight; the frozen reference has none.
 */
export function shardForZero3(
  group: DistGroup | undefined,
  model: CausalLM,
  reference: CausalLM | undefined,
  o: { shardReference: boolean; bucketBytes: number },
): void {
  if (!group) return
  group.shardModel(model, { bucketBytes: o.bucketBytes })
  if (reference && o.shardReference && reference !== model) group.shardModel(reference, { bucketBytes: o.bucketBytes })
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
      const tensors = await group.gatherUnit(model, i)
      // A tied head stored on load is written again, beside the embedding it is.
      const embed = tensors.find(([n]) => n === 'model.embed_tokens.weight')
      if (storedTiedHead && embed) tensors.push(['lm_head.weight', embed[1].detach()])
      return tensors
    },
    config,
    dir !== undefined,
  )
}
