// CPU back-end of the HRNet fuse. Work unit: one "line" of the output along its innermost
// memory axis — a row of W pixels (n, c, y) for NCHW-like outputs, the C channels of one pixel
// (n, y, x) for channels_last ones — so every thread streams through contiguous memory, OpenMP
// over lines. A line is built in a per-thread float buffer one input at a time: each pass is a
// simple loop the compiler vectorises when the input's stride along the line is 1, and the low
// -res gathers use offset tables made once per call instead of per-element index math.

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "common/float16_cpu.h"
#include "hr_fuse/hr_fuse.h"

namespace emohrnet_fast::hr_fuse {
namespace {

inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
inline float load(const Half* p) { return to_float(*p); }
inline float load(const BFloat16* p) { return to_float(*p); }
inline void store(float* p, float x) { *p = x; }
inline void store(double* p, double x) { *p = x; }
inline void store(Half* p, float x) { *p = to_half(x); }
inline void store(BFloat16* p, float x) { *p = to_bfloat16(x); }

template <typename T>
T* at(const View& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<T*>(v.data) + v.offset(n, c, h, w);
}

int threads(const Params& p) { return p.num_threads > 0 ? p.num_threads : omp_get_max_threads(); }

// acc[i] (=|+=) src[i * stride]; the stride-1 branch is the one that vectorises.
template <bool kFirst, typename T, typename A>
void accumulate_line(A* __restrict acc, const T* __restrict src, int64_t stride, int64_t len) {
  if (stride == 1) {
    for (int64_t i = 0; i < len; ++i) acc[i] = kFirst ? A(load(src + i)) : acc[i] + load(src + i);
  } else {
    for (int64_t i = 0; i < len; ++i) {
      acc[i] = kFirst ? A(load(src + i * stride)) : acc[i] + load(src + i * stride);
    }
  }
}

// acc[i] (=|+=) src[offsets[i]]: the nearest-neighbour gather of a low-res row.
template <bool kFirst, typename T, typename A>
void gather_line(A* __restrict acc, const T* __restrict src, const int64_t* __restrict offsets,
                 int64_t len) {
  for (int64_t i = 0; i < len; ++i) {
    acc[i] = kFirst ? A(load(src + offsets[i])) : acc[i] + load(src + offsets[i]);
  }
}

template <typename T, typename A>
void store_line(T* __restrict dst, int64_t stride, const A* __restrict value, int64_t len) {
  if (stride == 1) {
    for (int64_t i = 0; i < len; ++i) store(dst + i, value[i]);
  } else {
    for (int64_t i = 0; i < len; ++i) store(dst + i * stride, value[i]);
  }
}

// dst[i * stride] = relu(same[i]), or relu(fused_sum(same[i], low[i])) with low: the last
// pass over a line, merged with the store (short lines make every extra pass cost).
template <typename T, typename A>
void store_relu_line(T* __restrict dst, int64_t stride, const A* __restrict same, int64_t len,
                     const A* __restrict low = nullptr) {
  auto value = [&](int64_t i) { return relu(low ? fused_sum(same[i], low[i]) : same[i]); };
  if (stride == 1) {
    for (int64_t i = 0; i < len; ++i) store(dst + i, value(i));
  } else {
    for (int64_t i = 0; i < len; ++i) store(dst + i * stride, value(i));
  }
}

// One output line: same_line(view) gives the first element of the line in `view` and
// low_line(k) that of low_res[k] (whose elements along the line are at low_offsets[k][i]).
// Summed in the reference's order (see fused_sum): float32 matches it bit for bit.
template <typename T, typename A, typename SameLine, typename LowLine>
void fuse_line(const Params& p, const ForwardBuffers& buf, bool channels_inner, int64_t len,
               const int64_t* const* low_offsets, A* same, A* low, SameLine same_line,
               LowLine low_line) {
  auto inner_stride = [&](const View& v) { return channels_inner ? v.stride_c : v.stride_w; };
  accumulate_line<true>(same, same_line(buf.same[0]), inner_stride(buf.same[0]), len);
  for (int j = 1; j < p.num_same; ++j) {
    accumulate_line<false>(same, same_line(buf.same[j]), inner_stride(buf.same[j]), len);
  }
  T* dst = same_line(buf.out);
  const int64_t dst_stride = inner_stride(buf.out);
  if (p.num_low == 0) {
    store_relu_line(dst, dst_stride, same, len);
    return;
  }
  gather_line<true>(low, low_line(0), low_offsets[0], len);
  for (int k = 1; k < p.num_low; ++k) gather_line<false>(low, low_line(k), low_offsets[k], len);
  store_relu_line(dst, dst_stride, same, len, low);
}

template <typename T>
void forward(const Params& p, const ForwardBuffers& buf) {
  using A = typename Acc<T>::type;
  const int64_t B = p.batch, C = p.channels, H = p.height, W = p.width;
  const bool channels_inner = channels_innermost(buf.out, C);
  const int64_t len = channels_inner ? C : W;
  // Element offsets along a line of each low-res input: channel strides for channels_last
  // lines, the source column times the column stride for rows.
  std::vector<int64_t> offsets[kMaxLowRes];
  const int64_t* low_offsets[kMaxLowRes] = {};
  for (int k = 0; k < p.num_low; ++k) {
    offsets[k].resize(static_cast<std::size_t>(len));
    for (int64_t i = 0; i < len; ++i) {
      offsets[k][i] = channels_inner ? i * buf.low[k].stride_c
                                     : p.cols[k].source(i) * buf.low[k].stride_w;
    }
    low_offsets[k] = offsets[k].data();
  }
#pragma omp parallel num_threads(threads(p))
  {
    std::vector<A> same(static_cast<std::size_t>(len)), low(static_cast<std::size_t>(len));
    if (channels_inner) {
#pragma omp for schedule(static)
      for (int64_t pixel = 0; pixel < B * H * W; ++pixel) {
        const int64_t n = pixel / (H * W), y = (pixel / W) % H, x = pixel % W;
        fuse_line<T>(
            p, buf, true, len, low_offsets, same.data(), low.data(),
            [&](const View& v) { return at<T>(v, n, 0, y, x); },
            [&](int k) {
              return at<T>(buf.low[k], n, 0, p.rows[k].source(y), p.cols[k].source(x));
            });
      }
    } else {
#pragma omp for schedule(static)
      for (int64_t row = 0; row < B * C * H; ++row) {
        const int64_t n = row / (C * H), c = (row / H) % C, y = row % H;
        fuse_line<T>(
            p, buf, false, len, low_offsets, same.data(), low.data(),
            [&](const View& v) { return at<T>(v, n, c, y, 0); },
            [&](int k) { return at<T>(buf.low[k], n, c, p.rows[k].source(y), 0); });
      }
    }
  }
}

// value[i] = relu_grad(grad[i], out[i]) along one line: the gradient every input sees.
template <typename T, typename A>
void masked_grad_line(const T* grad, int64_t grad_stride, const T* out, int64_t out_stride,
                      int64_t len, A* __restrict value) {
  if (grad_stride == 1 && out_stride == 1) {
    for (int64_t i = 0; i < len; ++i) value[i] = relu_grad<A>(load(grad + i), load(out + i));
  } else {
    for (int64_t i = 0; i < len; ++i) {
      value[i] = relu_grad<A>(load(grad + i * grad_stride), load(out + i * out_stride));
    }
  }
}

// Row-major layouts: one (n, c) plane per work item. Each output row's masked gradient is
// formed once, stored to grad_same and added into every low-res plane's sums in the same pass,
// so grad and out are read once in all. A row adds into a low-res row block by block (the
// nearest map is monotonic, so each source column's block is one run of columns): one add per
// source element instead of a scatter whose neighbouring columns hit the same sum, which would
// chain every add on the previous one's store. Deterministic and independent of the thread
// count, no atomics.
template <typename T>
void backward_rows(const Params& p, const BackwardBuffers& buf) {
  using A = typename Acc<T>::type;
  const int64_t C = p.channels, H = p.height, W = p.width;
#pragma omp parallel num_threads(threads(p))
  {
    std::vector<A> line(static_cast<std::size_t>(W));
    std::vector<A> sums[kMaxLowRes];
    for (int k = 0; k < p.num_low; ++k) {
      sums[k].resize(static_cast<std::size_t>(p.rows[k].in_size * p.cols[k].in_size));
    }
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < p.batch * C; ++plane) {
      const int64_t n = plane / C, c = plane % C;
      for (int k = 0; k < p.num_low; ++k) std::fill(sums[k].begin(), sums[k].end(), A(0));
      for (int64_t y = 0; y < H; ++y) {
        masked_grad_line<T>(at<T>(buf.grad, n, c, y, 0), buf.grad.stride_w,
                            at<T>(buf.out, n, c, y, 0), buf.out.stride_w, W, line.data());
        store_line(at<T>(buf.grad_same, n, c, y, 0), buf.grad_same.stride_w, line.data(), W);
        for (int k = 0; k < p.num_low; ++k) {
          const int64_t w = p.cols[k].in_size;
          A* row_sums = sums[k].data() + p.rows[k].source(y) * w;
          const int64_t* block = buf.col_start[k];
          for (int64_t xs = 0; xs < w; ++xs) {
            A block_sum = 0;
            for (int64_t x = block[xs]; x < block[xs + 1]; ++x) block_sum += line[x];
            row_sums[xs] += block_sum;
          }
        }
      }
      for (int k = 0; k < p.num_low; ++k) {
        const int64_t w = p.cols[k].in_size;
        for (int64_t ys = 0; ys < p.rows[k].in_size; ++ys) {
          store_line(at<T>(buf.grad_low[k], n, c, ys, 0), buf.grad_low[k].stride_w,
                     sums[k].data() + ys * w, w);
        }
      }
    }
  }
}

// channels_last: lines run along channels, so each low-res pixel gathers its block pixel by
// pixel, all channels at once.
template <typename T>
void backward_channels_last(const Params& p, const BackwardBuffers& buf) {
  using A = typename Acc<T>::type;
  const int64_t B = p.batch, C = p.channels, H = p.height, W = p.width;
#pragma omp parallel num_threads(threads(p))
  {
    std::vector<A> line(static_cast<std::size_t>(C)), sums(static_cast<std::size_t>(C));
#pragma omp for schedule(static) nowait
    for (int64_t l = 0; l < B * H * W; ++l) {
      const int64_t n = l / (H * W), y = (l / W) % H, x = l % W;
      masked_grad_line<T>(at<T>(buf.grad, n, 0, y, x), buf.grad.stride_c,
                          at<T>(buf.out, n, 0, y, x), buf.out.stride_c, C, line.data());
      store_line(at<T>(buf.grad_same, n, 0, y, x), buf.grad_same.stride_c, line.data(), C);
    }
    for (int k = 0; k < p.num_low; ++k) {
      const int64_t h = p.rows[k].in_size, w = p.cols[k].in_size;
      const int64_t* row_start = buf.row_start[k];
      const int64_t* col_start = buf.col_start[k];
      const View& g = buf.grad_low[k];
#pragma omp for schedule(dynamic, 16) nowait
      for (int64_t pixel = 0; pixel < B * h * w; ++pixel) {
        const int64_t n = pixel / (h * w), ys = (pixel / w) % h, xs = pixel % w;
        std::fill(sums.begin(), sums.end(), A(0));
        for (int64_t y = row_start[ys]; y < row_start[ys + 1]; ++y) {
          for (int64_t x = col_start[xs]; x < col_start[xs + 1]; ++x) {
            masked_grad_line<T>(at<T>(buf.grad, n, 0, y, x), buf.grad.stride_c,
                                at<T>(buf.out, n, 0, y, x), buf.out.stride_c, C, line.data());
            for (int64_t ch = 0; ch < C; ++ch) sums[ch] += line[ch];
          }
        }
        store_line(at<T>(g, n, 0, ys, xs), g.stride_c, sums.data(), C);
      }
    }
  }
}

template <typename T>
void backward(const Params& p, const BackwardBuffers& buf) {
  if (channels_innermost(buf.grad_same, p.channels)) {
    backward_channels_last<T>(p, buf);
  } else {
    backward_rows<T>(p, buf);
  }
}

template <template <typename> class Fn, typename Buffers>
void dispatch(const Params& p, const Buffers& buf) {
  check_params(p);
  if (p.batch * p.channels * p.height * p.width == 0) return;
  switch (p.dtype) {
    case DType::kFloat32:
      return Fn<float>::run(p, buf);
    case DType::kFloat64:
      return Fn<double>::run(p, buf);
    case DType::kFloat16:
      return Fn<Half>::run(p, buf);
    case DType::kBFloat16:
      return Fn<BFloat16>::run(p, buf);
  }
  throw std::invalid_argument("hr_fuse: unknown dtype code");
}

template <typename T>
struct Forward {
  static void run(const Params& p, const ForwardBuffers& buf) { forward<T>(p, buf); }
};

template <typename T>
struct Backward {
  static void run(const Params& p, const BackwardBuffers& buf) { backward<T>(p, buf); }
};

}  // namespace

void hr_fuse_cpu(const Params& p, const ForwardBuffers& buf) { dispatch<Forward>(p, buf); }

void hr_fuse_backward_cpu(const Params& p, const BackwardBuffers& buf) {
  dispatch<Backward>(p, buf);
}

}  // namespace emohrnet_fast::hr_fuse
