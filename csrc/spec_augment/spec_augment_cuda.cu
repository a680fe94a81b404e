// CUDA back-end of SpecAugment: one read and one write per element (no read inside a
// frequency mask). Blocks own (row, frame-chunk) tiles; the masks of the example are read
// through the read-only cache.

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "spec_augment/spec_augment.h"

namespace emohrnet_fast::spec_augment {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridY = 65535;

__global__ void __launch_bounds__(kThreads) spec_augment_kernel(Params p, Buffers buf) {
  const int64_t rows = p.batch * p.rows_per_example;
  const masks::Masks& m = buf.masks;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t b = row / p.rows_per_example;
    const int64_t f = (row % p.rows_per_example) % p.features;
    const bool whole_row = masks::row_masked(m, b, f);
    const float value = __ldg(m.values + b);
    const float* in = buf.in + row * p.frames;
    float* out = buf.out + row * p.frames;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < p.frames;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      out[t] = (whole_row || masks::time_masked(m, b, t)) ? value : in[t];
    }
  }
}

}  // namespace

void spec_augment_cuda(const Params& p, const Buffers& buf, std::uintptr_t stream_handle) {
  auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const int64_t rows = p.batch * p.rows_per_example;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((p.frames + kThreads - 1) / kThreads, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(rows, kMaxGridY)));
  spec_augment_kernel<<<grid, kThreads, 0, stream>>>(p, buf);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("emohrnet_fast spec_augment CUDA: ") +
                             cudaGetErrorString(err));
  }
}

}  // namespace emohrnet_fast::spec_augment
