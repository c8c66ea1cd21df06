// The per-sequence sums, the per-row gradient weights and the per-pair loss of the ε-DPO op, one
// launch each (contract in pair_kernels.h). They move a few KB: what they save is launches, and
// every reduction runs in a fixed order, so a call gives the same bits every time.
#include "pair_kernels.h"

#include "../math/row_stats.h"

namespace edpo_cuda {
namespace {

constexpr int kSumThreads = 256;
constexpr int kPairThreads = 256;
constexpr int kNumSums = 6;  // policy, reference, plus, minus, logit sum, tokens (SequenceSumsOut)

// One block per sequence: six float64 sums over its positions, then a shared-memory tree.
__global__ void __launch_bounds__(kSumThreads)
    sequence_sums_kernel(const float* __restrict__ stats, const float* __restrict__ w, int64_t sequences,
                         int64_t positions, SequenceSumsOut out) {
  __shared__ double partial[kNumSums][kSumThreads];
  const int64_t rows = sequences * positions;
  const int64_t seq = blockIdx.x;
  const int64_t base = seq * positions;
  // The stats in the order of SequenceSumsOut (row_stats.h's RowStat order for the first five).
  const int stat_of[kNumSums - 1] = {edpo::kPolicyLogp, edpo::kReferenceLogp, edpo::kPlusLogp, edpo::kMinusLogp,
                                     edpo::kLogitSum};
  double acc[kNumSums] = {0, 0, 0, 0, 0, 0};
  for (int64_t t = threadIdx.x; t < positions; t += kSumThreads) {
    const double weight = double(w[base + t]);
    if (weight == 0) continue;  // the row kernels left those rows' statistics at 0
    for (int k = 0; k < kNumSums - 1; ++k) acc[k] += double(stats[int64_t(stat_of[k]) * rows + base + t]) * weight;
    acc[kNumSums - 1] += weight;
  }
  for (int k = 0; k < kNumSums; ++k) partial[k][threadIdx.x] = acc[k];
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      for (int k = 0; k < kNumSums; ++k) partial[k][threadIdx.x] += partial[k][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x < kNumSums) out.sums[threadIdx.x][seq] = partial[threadIdx.x][0];
}

__global__ void row_grads_kernel(const double* __restrict__ grad_sequences, const float* __restrict__ w,
                                 int64_t positions, int64_t rows, float* __restrict__ row_grad) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n < rows) row_grad[n] = float(grad_sequences[n / positions] * double(w[n]));
}

// One block: each thread takes pairs tid, tid + 256, …; the loss is a tree sum of the threads' sums.
__global__ void __launch_bounds__(kPairThreads)
    pair_loss_kernel(edpo::PairSums sums, int64_t pairs, edpo::PairConstants constants, double* record,
                     double* grad_sums, double* loss_mean) {
  __shared__ double partial[kPairThreads];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < pairs; i += kPairThreads)
    acc += edpo::pair_terms(sums, pairs, i, constants, record + i * edpo::kNumPairColumns, grad_sums + i,
                            grad_sums + pairs + i);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kPairThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss_mean = partial[0] / double(pairs);
}

}  // namespace

cudaError_t sequence_sums(const float* stats, const float* row_weight, int64_t sequences, int64_t positions,
                          SequenceSumsOut out, cudaStream_t stream) {
  if (sequences < 0 || positions < 0 || sequences > 2147483647) return cudaErrorInvalidValue;
  if (sequences == 0) return cudaSuccess;
  sequence_sums_kernel<<<unsigned(sequences), kSumThreads, 0, stream>>>(stats, row_weight, sequences, positions, out);
  return cudaGetLastError();
}

cudaError_t row_grads(const double* grad_sequences, const float* row_weight, int64_t sequences, int64_t positions,
                      float* row_grad, cudaStream_t stream) {
  const int64_t rows = sequences * positions;
  if (sequences < 0 || positions < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int64_t blocks = (rows + 255) / 256;
  if (blocks > 2147483647) return cudaErrorInvalidValue;
  row_grads_kernel<<<unsigned(blocks), 256, 0, stream>>>(grad_sequences, row_weight, positions, rows, row_grad);
  return cudaGetLastError();
}

cudaError_t pair_loss(const edpo::PairSums& sums, int64_t pairs, const edpo::PairConstants& constants, double* record,
                      double* grad_sums, double* loss_mean, cudaStream_t stream) {
  if (pairs < 1) return cudaErrorInvalidValue;
  pair_loss_kernel<<<1, kPairThreads, 0, stream>>>(sums, pairs, constants, record, grad_sums, loss_mean);
  return cudaGetLastError();
}

}  // namespace edpo_cuda
