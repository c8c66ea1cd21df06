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
#include <string>
#include <vector>

#include "../models/causal_lm.h"
#include "process_group.h"

namespace edpo::dist {

// One gather unit's tensors in the order its flat buffer holds them (the padding after them).
struct UnitParams {
  std::string name;  // "zero3.<unit>"
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
};

// Each unit's tensors: a sharded model's own layout, or the one make_layer_shards gives a whole
// model (a resume across ZeRO layouts re-shards the optimizer state by it).
std::vector<UnitParams> unit_params(const models::CausalLM& model);

// The units of `model`'s current (whole) tensors, sharded over `group`.
std::shared_ptr<models::UnitSource> make_layer_shards(std::shared_ptr<Group> group, const models::CausalLM& model,
                                                      int64_t bucket_bytes);

}  // namespace edpo::dist
