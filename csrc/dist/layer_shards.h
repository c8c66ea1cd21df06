// ZeRO-3: a model's parameters as per-rank shards of flat gather units (the embedding, each
// decoder layer, the final norm, the untied head; lib/model/memory-plan.ts gatherUnits counts the
// same). Each unit is flattened, padded to a multiple of the world size, and rank r keeps chunk r,
// a leaf that trains when the model's tensors did. The forward gathers a unit just before its use
// (prefetching the next one while it computes) and frees it after; the backward gathers it again,
// prefetching the one below, and reduce-scatters the unit's gradient onto the shards as soon as
// autograd has completed it (GatherFn's backward), then frees the gathered weights. At most
// about `bucket_bytes` of reduce-scatters are in flight (one always may be).
#pragma once
#include <memory>

#include "../models/causal_lm.h"
#include "process_group.h"

namespace edpo::dist {

// The units of `model`'s current (whole) tensors, sharded over `group`.
std::shared_ptr<models::UnitSource> make_layer_shards(std::shared_ptr<Group> group, const models::CausalLM& model,
                                                      int64_t bucket_bytes);

}  // namespace edpo::dist
