// CUDA back-end of the HRNet fuse. Forward: one thread per output element (grid-stride),
// walking the output in its memory order so writes, and reads of same-layout inputs, coalesce;
// the low-res reads are gathers of a far smaller tensor and hit L1/L2. Backward: one launch
// whose index space is the same-res gradient followed by every low-res gradient; a low-res
// element sums its own nearest-neighbour block (a gather, deterministic, no atomics).

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
// the walk order, then launches Kernel<T, Index, kChannelsInner>.
template <typename T, template <typename, typename, bool> class Kernel, typename Buffers>
void launch(const Params& p, const Buffers& buf, int64_t total, bool channels_inner,
            cudaStream_t stream, const char* what) {
  if (total == 0) return;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks));
  const bool narrow = total <= std::numeric_limits<int32_t>::max();
  if (narrow && channels_inner) {
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
};

template <typename T, typename Index, bool kChannelsInner>
struct BackwardKernel {
  static void launch(unsigned blocks, int threads, cudaStream_t stream, const Params& p,
                     const BackwardBuffers& buf) {
    backward_kernel<T, Index, kChannelsInner><<<blocks, threads, 0, stream>>>(p, buf);
  }
};

template <typename T>
void forward(const Params& p, const ForwardBuffers& buf, cudaStream_t stream) {
  const int64_t total = p.batch * p.channels * p.height * p.width;
  launch<T, ForwardKernel>(p, buf, total, channels_innermost(buf.out, p.channels), stream,
                           "launching hr_fuse forward_kernel");
}

template <typename T>
void backward(const Params& p, const BackwardBuffers& buf, cudaStream_t stream) {
  int64_t total = p.batch * p.channels * p.height * p.width;
  for (int k = 0; k < p.num_low; ++k) {
    total += p.batch * p.channels * p.rows[k].in_size * p.cols[k].in_size;
  }
  launch<T, BackwardKernel>(p, buf, total, channels_innermost(buf.grad_same, p.channels),
                            stream, "launching hr_fuse backward_kernel");
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
