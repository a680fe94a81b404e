// CUDA back-end of the HRNet fuse. Forward: one thread per output element (grid-stride),
// walking the output in its memory order so writes, and reads of same-layout inputs, coalesce;
// the low-res reads are gathers of a far smaller tensor and hit L1/L2. Backward: one launch
// whose index space is the same-res gradient followed by every low-res gradient; a low-res
// element sums its own nearest-neighbour block (a gather, deterministic, no atomics).
//
// Two versions of each kernel. The general one addresses every tensor through its four 64-bit
// strides and unravels the index with hardware division. The dense one serves what models
// pass (every tensor contiguous, or every tensor channels_last): same-layout tensors share the
// linear index, low-res offsets come from the unravelled coordinates, and division by the
// sizes is a multiply-high and a shift. On an H200 (2026-12-04) the general forward took the
// same time in bf16 as in fp32, at 9-18 % of the memory floor: its index arithmetic, not its
// memory traffic, set its speed.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "hr_fuse/hr_fuse.h"

namespace emohrnet_fast::hr_fuse {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops cover any size; this many blocks already fill every current GPU, and it
// keeps grid.x far below its limit and the 32-bit index arithmetic free of overflow.
constexpr int64_t kMaxBlocks = 65535;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("emohrnet_fast hr_fuse CUDA: ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

__device__ __forceinline__ float load(const float* p) { return __ldg(p); }
__device__ __forceinline__ double load(const double* p) { return __ldg(p); }
__device__ __forceinline__ float load(const __half* p) { return __half2float(__ldg(p)); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) {
  return __bfloat162float(__ldg(p));
}
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(double* p, double x) { *p = x; }
__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

template <typename T>
__device__ __forceinline__ const T* at(const View& v, int64_t n, int64_t c, int64_t h,
                                       int64_t w) {
  return static_cast<const T*>(v.data) + v.offset(n, c, h, w);
}

template <typename T>
__device__ __forceinline__ T* at_mut(const View& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<T*>(v.data) + v.offset(n, c, h, w);
}

// Linear index -> (n, c, y, x) in NCHW order, or NHWC order when channels are innermost.
template <bool kChannelsInner, typename Index>
__device__ __forceinline__ void unravel(Index i, Index C, Index H, Index W, Index& n, Index& c,
                                        Index& y, Index& x) {
  if (kChannelsInner) {
    c = i % C;
    i /= C;
    x = i % W;
    i /= W;
    y = i % H;
    n = i / H;
  } else {
    x = i % W;
    i /= W;
    y = i % H;
    i /= H;
    c = i % C;
    n = i / C;
  }
}

// Unsigned division by a divisor fixed at launch, as a multiply-high, an add and a shift
// (Granlund & Montgomery 1994, round-up multiplier): exact for every dividend below 2^31, which
// the dense kernels guarantee (they run only when the whole index space fits in int32).
struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;
  uint32_t shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(int64_t d) : divisor(static_cast<uint32_t>(d)) {
    while ((uint64_t{1} << shift) < divisor) ++shift;  // shift = ceil(log2(divisor))
    const uint64_t excess = (uint64_t{1} << shift) - divisor;  // < divisor <= 2^31
    multiplier = static_cast<uint32_t>((excess << 32) / divisor + 1);
  }

  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    const uint32_t high = static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> 32);
    return (high + n) >> shift;
  }
  // n = quotient * divisor + remainder
  __device__ __forceinline__ void divmod(uint32_t n, uint32_t& quotient,
                                         uint32_t& remainder) const {
    quotient = div(n);
    remainder = n - quotient * divisor;
  }
};

// Sizes of a launch whose tensors are all dense in one layout (see dense_layout).
struct DenseShape {
  FastDivmod channels, height, width;  // the output's
  FastDivmod low_height[kMaxLowRes], low_width[kMaxLowRes];
  uint32_t low_h[kMaxLowRes] = {}, low_w[kMaxLowRes] = {};
};

enum class Layout { kStrided, kNCHW, kNHWC };

// Whether v addresses a (B, C, H, W) tensor as dense contiguous or dense channels_last memory.
Layout dense_layout(const View& v, int64_t C, int64_t H, int64_t W) {
  if (v.stride_w == 1 && v.stride_h == W && v.stride_c == H * W && v.stride_n == C * H * W) {
    return Layout::kNCHW;
  }
  if (v.stride_c == 1 && v.stride_w == C && v.stride_h == W * C && v.stride_n == H * W * C) {
    return Layout::kNHWC;
  }
  return Layout::kStrided;
}

// The layout every tensor of the call shares densely, or kStrided. `outputs_like` are
// (B, C, H, W) like the output, `low` the (B, C, h_k, w_k) ones.
template <int N>
Layout common_layout(const Params& p, const View (&outputs_like)[N], int count,
                     const View* low) {
  const Layout layout = dense_layout(outputs_like[0], p.channels, p.height, p.width);
  if (layout == Layout::kStrided) return layout;
  for (int j = 1; j < count; ++j) {
    if (dense_layout(outputs_like[j], p.channels, p.height, p.width) != layout) {
      return Layout::kStrided;
    }
  }
  for (int k = 0; k < p.num_low; ++k) {
    if (dense_layout(low[k], p.channels, p.rows[k].in_size, p.cols[k].in_size) != layout) {
      return Layout::kStrided;
    }
  }
  return layout;
}

DenseShape dense_shape(const Params& p) {
  DenseShape d;
  d.channels = FastDivmod(p.channels);
  d.height = FastDivmod(p.height);
  d.width = FastDivmod(p.width);
  for (int k = 0; k < p.num_low; ++k) {
    d.low_height[k] = FastDivmod(p.rows[k].in_size);
    d.low_width[k] = FastDivmod(p.cols[k].in_size);
    d.low_h[k] = static_cast<uint32_t>(p.rows[k].in_size);
    d.low_w[k] = static_cast<uint32_t>(p.cols[k].in_size);
  }
  return d;
}

// A dense (n, c, y, x) coordinate: NCHW keeps n * C + c as `plane` (c unused), NHWC keeps n
// and c apart.
struct DenseCoord {
  uint32_t plane, channel, y, x;
};

// Index of a dense (B, C, height, width) tensor in its memory order -> its coordinates.
template <bool kNHWC>
__device__ __forceinline__ DenseCoord dense_unravel(uint32_t i, const FastDivmod& channels,
                                                    const FastDivmod& height,
                                                    const FastDivmod& width) {
  DenseCoord at;
  uint32_t rest;
  if (kNHWC) {
    channels.divmod(i, rest, at.channel);
    width.divmod(rest, rest, at.x);
    height.divmod(rest, at.plane, at.y);  // plane = n
  } else {
    at.channel = 0;
    width.divmod(i, rest, at.x);
    height.divmod(rest, at.plane, at.y);  // plane = n * C + c
  }
  return at;
}

// Offset of (plane, channel, y, x) in a dense tensor of that height and width.
template <bool kNHWC>
__device__ __forceinline__ uint32_t dense_offset(const DenseCoord& at, uint32_t y, uint32_t x,
                                                 uint32_t height, uint32_t width,
                                                 uint32_t channels) {
  return kNHWC ? ((at.plane * height + y) * width + x) * channels + at.channel
               : (at.plane * height + y) * width + x;
}

template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads)
    dense_forward_kernel(const Params p, const ForwardBuffers buf, const DenseShape d) {
  using A = typename Acc<T>::type;
  const uint32_t total = static_cast<uint32_t>(p.batch * p.channels * p.height * p.width);
  const uint32_t step = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    A same = load(static_cast<const T*>(buf.same[0].data) + i);
    for (int j = 1; j < p.num_same; ++j) same += load(static_cast<const T*>(buf.same[j].data) + i);
    A value = same;
    if (p.num_low > 0) {
      const DenseCoord at = dense_unravel<kNHWC>(i, d.channels, d.height, d.width);
      A low = 0;
      for (int k = 0; k < p.num_low; ++k) {
        const uint32_t offset =
            dense_offset<kNHWC>(at, p.rows[k].source(at.y), p.cols[k].source(at.x), d.low_h[k],
                                d.low_w[k], d.channels.divisor);
        const A term = load(static_cast<const T*>(buf.low[k].data) + offset);
        low = k == 0 ? term : low + term;
      }
      value = fused_sum(same, low);
    }
    store(static_cast<T*>(buf.out.data) + i, relu(value));
  }
}

template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kThreads)
    dense_backward_kernel(const Params p, const BackwardBuffers buf, const DenseShape d) {
  using A = typename Acc<T>::type;
  const T* grad = static_cast<const T*>(buf.grad.data);
  const T* out = static_cast<const T*>(buf.out.data);
  const uint32_t plane_size = static_cast<uint32_t>(p.batch * p.channels);
  // Segment 0 is the same-res gradient, segment k + 1 the gradient of low_res[k].
  uint32_t seg_end[kMaxLowRes + 1];
  seg_end[0] = static_cast<uint32_t>(p.batch * p.channels * p.height * p.width);
  for (int k = 0; k < p.num_low; ++k) {
    seg_end[k + 1] = seg_end[k] + plane_size * d.low_h[k] * d.low_w[k];
  }
  const uint32_t total = seg_end[p.num_low];
  const uint32_t step = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    if (i < seg_end[0]) {
      store(static_cast<T*>(buf.grad_same.data) + i,
            relu_grad(A(load(grad + i)), A(load(out + i))));
      continue;
    }
    int k = 0;
    while (i >= seg_end[k + 1]) ++k;
    const uint32_t j = i - seg_end[k];
    const DenseCoord at = dense_unravel<kNHWC>(j, d.channels, d.low_height[k], d.low_width[k]);
    const uint32_t y_end = static_cast<uint32_t>(__ldg(buf.row_start[k] + at.y + 1));
    const uint32_t x_begin = static_cast<uint32_t>(__ldg(buf.col_start[k] + at.x));
    const uint32_t x_end = static_cast<uint32_t>(__ldg(buf.col_start[k] + at.x + 1));
    const uint32_t H = d.height.divisor, W = d.width.divisor, C = d.channels.divisor;
    A sum = 0;
    for (uint32_t dy = static_cast<uint32_t>(__ldg(buf.row_start[k] + at.y)); dy < y_end; ++dy) {
      for (uint32_t dx = x_begin; dx < x_end; ++dx) {
        const uint32_t o = dense_offset<kNHWC>(at, dy, dx, H, W, C);
        sum += relu_grad(A(load(grad + o)), A(load(out + o)));
      }
    }
    store(static_cast<T*>(buf.grad_low[k].data) + j, sum);  // dense: j is its own offset
  }
}

template <typename T, typename Index, bool kChannelsInner>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const Params p, const ForwardBuffers buf) {
  using A = typename Acc<T>::type;
  const Index C = static_cast<Index>(p.channels), H = static_cast<Index>(p.height),
              W = static_cast<Index>(p.width);
  const Index total = static_cast<Index>(p.batch) * C * H * W;
  const Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    Index n, c, y, x;
    unravel<kChannelsInner>(i, C, H, W, n, c, y, x);
    // Same order of summation as the CPU back-end and the reference (see fused_sum).
    A same = load(at<T>(buf.same[0], n, c, y, x));
    for (int j = 1; j < p.num_same; ++j) same += load(at<T>(buf.same[j], n, c, y, x));
    A value = same;
    if (p.num_low > 0) {
      A low = load(at<T>(buf.low[0], n, c, p.rows[0].source(y), p.cols[0].source(x)));
      for (int k = 1; k < p.num_low; ++k) {
        low += load(at<T>(buf.low[k], n, c, p.rows[k].source(y), p.cols[k].source(x)));
      }
      value = fused_sum(same, low);
    }
    store(at_mut<T>(buf.out, n, c, y, x), relu(value));
  }
}

template <typename T>
__device__ __forceinline__ typename Acc<T>::type masked_grad(const BackwardBuffers& buf,
                                                             int64_t n, int64_t c, int64_t y,
                                                             int64_t x) {
  return relu_grad(load(at<T>(buf.grad, n, c, y, x)), load(at<T>(buf.out, n, c, y, x)));
}

template <typename T, typename Index, bool kChannelsInner>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const Params p, const BackwardBuffers buf) {
  using A = typename Acc<T>::type;
  const Index B = static_cast<Index>(p.batch), C = static_cast<Index>(p.channels),
              H = static_cast<Index>(p.height), W = static_cast<Index>(p.width);
  // Segment 0 is the same-res gradient, segment k + 1 the gradient of low_res[k].
  Index seg_end[kMaxLowRes + 1];
  seg_end[0] = B * C * H * W;
  for (int k = 0; k < p.num_low; ++k) {
    seg_end[k + 1] = seg_end[k] + B * C * static_cast<Index>(p.rows[k].in_size) *
                                      static_cast<Index>(p.cols[k].in_size);
  }
  const Index total = seg_end[p.num_low];
  const Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    Index n, c, y, x;
    if (i < seg_end[0]) {
      unravel<kChannelsInner>(i, C, H, W, n, c, y, x);
      store(at_mut<T>(buf.grad_same, n, c, y, x), masked_grad<T>(buf, n, c, y, x));
      continue;
    }
    int k = 0;
    while (i >= seg_end[k + 1]) ++k;
    const Index h = static_cast<Index>(p.rows[k].in_size), w = static_cast<Index>(p.cols[k].in_size);
    unravel<kChannelsInner>(i - seg_end[k], C, h, w, n, c, y, x);
    const int64_t y_end = __ldg(buf.row_start[k] + y + 1), x_begin = __ldg(buf.col_start[k] + x),
                  x_end = __ldg(buf.col_start[k] + x + 1);
    A sum = 0;
    for (int64_t dy = __ldg(buf.row_start[k] + y); dy < y_end; ++dy) {
      for (int64_t dx = x_begin; dx < x_end; ++dx) sum += masked_grad<T>(buf, n, c, dy, dx);
    }
    store(at_mut<T>(buf.grad_low[k], n, c, y, x), sum);
  }
}

// Picks the index width (32-bit whenever the whole index space fits, for cheap div/mod) and
// the walk order, then launches Kernel<T, Index, kChannelsInner>: its dense kernel
// (launch_dense) when every tensor shares a dense `layout` and the index is 32-bit.
template <typename T, template <typename, typename, bool> class Kernel, typename Buffers>
void launch(const Params& p, const Buffers& buf, int64_t total, bool channels_inner,
            Layout layout, cudaStream_t stream, const char* what) {
  if (total == 0) return;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks));
  const bool narrow = total <= std::numeric_limits<int32_t>::max();
  if (narrow && layout == Layout::kNHWC) {
    Kernel<T, uint32_t, true>::launch_dense(blocks, kThreads, stream, p, buf);
  } else if (narrow && layout == Layout::kNCHW) {
    Kernel<T, uint32_t, false>::launch_dense(blocks, kThreads, stream, p, buf);
  } else if (narrow && channels_inner) {
    Kernel<T, uint32_t, true>::launch(blocks, kThreads, stream, p, buf);
  } else if (narrow) {
    Kernel<T, uint32_t, false>::launch(blocks, kThreads, stream, p, buf);
  } else if (channels_inner) {
    Kernel<T, int64_t, true>::launch(blocks, kThreads, stream, p, buf);
  } else {
    Kernel<T, int64_t, false>::launch(blocks, kThreads, stream, p, buf);
  }
  check(cudaGetLastError(), what);
}

template <typename T, typename Index, bool kChannelsInner>
struct ForwardKernel {
  static void launch(unsigned blocks, int threads, cudaStream_t stream, const Params& p,
                     const ForwardBuffers& buf) {
    forward_kernel<T, Index, kChannelsInner><<<blocks, threads, 0, stream>>>(p, buf);
  }
  // Index is uint32_t here; channels innermost means NHWC.
  static void launch_dense(unsigned blocks, int threads, cudaStream_t stream, const Params& p,
                           const ForwardBuffers& buf) {
    const DenseShape d = dense_shape(p);
    dense_forward_kernel<T, kChannelsInner><<<blocks, threads, 0, stream>>>(p, buf, d);
  }
};

template <typename T, typename Index, bool kChannelsInner>
struct BackwardKernel {
  static void launch(unsigned blocks, int threads, cudaStream_t stream, const Params& p,
                     const BackwardBuffers& buf) {
    backward_kernel<T, Index, kChannelsInner><<<blocks, threads, 0, stream>>>(p, buf);
  }
  // Index is uint32_t here; channels innermost means NHWC.
  static void launch_dense(unsigned blocks, int threads, cudaStream_t stream, const Params& p,
                           const BackwardBuffers& buf) {
    const DenseShape d = dense_shape(p);
    dense_backward_kernel<T, kChannelsInner><<<blocks, threads, 0, stream>>>(p, buf, d);
  }
};

template <typename T>
void forward(const Params& p, const ForwardBuffers& buf, cudaStream_t stream) {
  const int64_t total = p.batch * p.channels * p.height * p.width;
  const View like_out[kMaxSameRes + 1] = {buf.out, buf.same[0], buf.same[1], buf.same[2],
                                          buf.same[3]};
  launch<T, ForwardKernel>(p, buf, total, channels_innermost(buf.out, p.channels),
                           common_layout(p, like_out, p.num_same + 1, buf.low), stream,
                           "launching hr_fuse forward_kernel");
}

template <typename T>
void backward(const Params& p, const BackwardBuffers& buf, cudaStream_t stream) {
  int64_t total = p.batch * p.channels * p.height * p.width;
  for (int k = 0; k < p.num_low; ++k) {
    total += p.batch * p.channels * p.rows[k].in_size * p.cols[k].in_size;
  }
  const View like_out[3] = {buf.grad_same, buf.grad, buf.out};
  launch<T, BackwardKernel>(p, buf, total, channels_innermost(buf.grad_same, p.channels),
                            common_layout(p, like_out, 3, buf.grad_low), stream,
                            "launching hr_fuse backward_kernel");
}

template <template <typename> class Fn, typename Buffers>
void dispatch(const Params& p, const Buffers& buf, std::uintptr_t stream) {
  check_params(p);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::kFloat32:
      return Fn<float>::run(p, buf, s);
    case DType::kFloat64:
      return Fn<double>::run(p, buf, s);
    case DType::kFloat16:
      return Fn<__half>::run(p, buf, s);
    case DType::kBFloat16:
      return Fn<__nv_bfloat16>::run(p, buf, s);
  }
  throw std::invalid_argument("hr_fuse: unknown dtype code");
}

template <typename T>
struct Forward {
  static void run(const Params& p, const ForwardBuffers& buf, cudaStream_t s) {
    forward<T>(p, buf, s);
  }
};

template <typename T>
struct Backward {
  static void run(const Params& p, const BackwardBuffers& buf, cudaStream_t s) {
    backward<T>(p, buf, s);
  }
};

}  // namespace

void hr_fuse_cuda(const Params& p, const ForwardBuffers& buf, std::uintptr_t stream) {
  dispatch<Forward>(p, buf, stream);
}

void hr_fuse_backward_cuda(const Params& p, const BackwardBuffers& buf, std::uintptr_t stream) {
  dispatch<Backward>(p, buf, stream);
}

}  // namespace emohrnet_fast::hr_fuse
