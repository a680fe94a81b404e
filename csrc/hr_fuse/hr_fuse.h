#pragma once
// HRNet multi-resolution fuse: out = relu(sum(same_res) + sum(nearest_upsample(low_res))), and
// its backward, each in one pass that never materialises an upsampled tensor.
// Every pointer is validated by the Python layer (emohrnet_fast/ops/hr_fuse.py) before it gets
// here: dtypes, devices and sizes are the caller's contract. Tensors are addressed through
// element strides, so contiguous, channels_last, mixed and non-contiguous views all work.

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "common/host_device.h"

namespace emohrnet_fast::hr_fuse {

constexpr int kMaxSameRes = 4;
constexpr int kMaxLowRes = 3;

// Codes shared with emohrnet_fast/ops/hr_fuse.py.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// The type sums are formed in: float for every dtype but float64 (kept in double so gradcheck
// sees full precision).
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

// A (B, C, H, W) tensor as its data pointer and element strides.
struct View {
  void* data = nullptr;
  int64_t stride_n = 0, stride_c = 0, stride_h = 0, stride_w = 0;

  EF_HD int64_t offset(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return n * stride_n + c * stride_c + h * stride_h + w * stride_w;
  }
};

// PyTorch's legacy "nearest" rule (ATen UpSample.h nearest_idx, called with sizes and no
// scale_factor, which is what F.interpolate(size=...) does): identity when the sizes match,
// dst >> 1 when the output is exactly twice the input, otherwise
// min(floor(dst * scale), in - 1) with scale = in / out rounded to float32 once. The float32
// rounding is part of the rule: computing exactly or in double picks another source for some
// sizes (26 -> 44: output 22 reads 12, not 13), so the scale is made once here, on the host,
// and both back-ends use it.
struct NearestMap {
  int64_t in_size = 1;
  int64_t out_size = 1;
  float scale = 1.0f;

  // Index: int64_t, or uint32_t in the CUDA kernels' 32-bit paths (the same value).
  template <typename Index>
  EF_HD Index source(Index dst) const {
    if (out_size == in_size) return dst;
    if (out_size == 2 * in_size) return dst >> 1;
    const Index src = static_cast<Index>(floorf(static_cast<float>(dst) * scale));
    const Index last = static_cast<Index>(in_size - 1);
    return src < last ? src : last;
  }
};

inline NearestMap make_nearest_map(int64_t in_size, int64_t out_size) {
  NearestMap map;
  map.in_size = in_size;
  map.out_size = out_size;
  map.scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  return map;
}

struct Params {
  int64_t batch = 0, channels = 0, height = 0, width = 0;  // the output (B, C, H, W)
  int num_same = 0;                                        // 1 .. kMaxSameRes
  int num_low = 0;                                         // 0 .. kMaxLowRes
  NearestMap rows[kMaxLowRes];  // low_res[k]: output row -> source row (h_k -> H)
  NearestMap cols[kMaxLowRes];  // low_res[k]: output column -> source column (w_k -> W)
  DType dtype = DType::kFloat32;
  int num_threads = 0;  // CPU: OpenMP threads (0: OpenMP's default)
};

struct ForwardBuffers {
  View same[kMaxSameRes];  // (B, C, H, W), read
  View low[kMaxLowRes];    // (B, C, h_k, w_k), read
  View out;                // (B, C, H, W), written
};

struct BackwardBuffers {
  View grad;              // (B, C, H, W) dL/d(out), read
  View out;               // (B, C, H, W) the forward's output (its sign is ReLU's mask), read
  View grad_same;         // (B, C, H, W), written: the gradient of every same_res input
  View grad_low[kMaxLowRes];  // (B, C, h_k, w_k), written
  // Source row s of low_res[k] feeds output rows [row_start[k][s], row_start[k][s + 1]):
  // the nearest map is monotonic, so each low-res pixel's block is a contiguous range, and
  // its gradient is a gather over that range (deterministic, no atomics). (h_k + 1,) and
  // (w_k + 1,) int64 tables on the kernel's device.
  const int64_t* row_start[kMaxLowRes] = {};
  const int64_t* col_start[kMaxLowRes] = {};
};

// The invariants the kernels' indexing relies on; Python checks them first, with messages
// that name the argument, so this only guards other C++ callers.
inline void check_params(const Params& p) {
  if (p.num_same < 1 || p.num_same > kMaxSameRes || p.num_low < 0 || p.num_low > kMaxLowRes) {
    throw std::invalid_argument("hr_fuse: expected 1-4 same-res and 0-3 low-res inputs");
  }
  for (int k = 0; k < p.num_low; ++k) {
    const NearestMap& r = p.rows[k];
    const NearestMap& c = p.cols[k];
    if (r.out_size != p.height || c.out_size != p.width || r.in_size < 1 || c.in_size < 1 ||
        r.in_size > r.out_size || c.in_size > c.out_size) {
      throw std::invalid_argument("hr_fuse: low-res sizes must be in [1, output size]");
    }
  }
}

void hr_fuse_cpu(const Params& p, const ForwardBuffers& buf);
void hr_fuse_backward_cpu(const Params& p, const BackwardBuffers& buf);
void hr_fuse_cuda(const Params& p, const ForwardBuffers& buf, std::uintptr_t stream);
void hr_fuse_backward_cuda(const Params& p, const BackwardBuffers& buf, std::uintptr_t stream);

// ---- math shared by both back-ends -------------------------------------------------------

// The reference is relu(sum(same_res) + sum(upsampled low_res)): the two partial sums are
// formed separately, each in list order, and added last. Keeping that order makes float32
// results bit-identical to the eager expression.
template <typename Acc>
EF_HD Acc fused_sum(Acc same_sum, Acc low_sum) {
  return same_sum + low_sum;
}

// ReLU that lets NaN through (as torch.relu does), so bad values stay visible downstream.
template <typename Acc>
EF_HD Acc relu(Acc x) {
  return x <= Acc(0) ? Acc(0) : x;
}

// ReLU's backward as torch.threshold_backward(grad, out, 0): a select, not a product, so a
// NaN/Inf gradient where the output was clamped becomes 0, and a NaN output passes the grad.
template <typename Acc>
EF_HD Acc relu_grad(Acc grad, Acc out) {
  return out <= Acc(0) ? Acc(0) : grad;
}

// Whether to walk the output with channels as the fastest index: its memory order when it is
// channels_last, so the writes (and the reads of same-layout inputs) are contiguous.
inline bool channels_innermost(const View& v, int64_t channels) {
  return channels > 1 && v.stride_c == 1;
}

}  // namespace emohrnet_fast::hr_fuse
