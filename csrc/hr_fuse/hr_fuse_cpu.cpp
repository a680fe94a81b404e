// CPU back-end of the HRNet fuse: OpenMP over output rows (or, for channels_last outputs, over
// pixels with channels innermost), so each thread streams through contiguous output memory.
// The column source indices of the low-res inputs are computed once per call, the row source
// once per row: the inner loop is loads, adds and one store.

#include <omp.h>

#include <stdexcept>
#include <vector>

#include "common/float16_cpu.h"
#include "hr_fuse/hr_fuse.h"

namespace emohrnet_fast::hr_fuse {
namespace {

// The element type as stored, and the type the sums are formed in: float for every dtype but
// float64 (kept in double so gradcheck sees full precision).
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
inline float load(const Half* p) { return to_float(*p); }
inline float load(const BFloat16* p) { return to_float(*p); }
inline void store(float* p, float x) { *p = x; }
inline void store(double* p, double x) { *p = x; }
inline void store(Half* p, float x) { *p = to_half(x); }
inline void store(BFloat16* p, float x) { *p = to_bfloat16(x); }

template <typename T>
const T* at(const View& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<const T*>(v.data) + v.offset(n, c, h, w);
}

template <typename T>
T* at_mut(const View& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<T*>(v.data) + v.offset(n, c, h, w);
}

int threads(const Params& p) { return p.num_threads > 0 ? p.num_threads : omp_get_max_threads(); }

// out[n, c, y, x] for one output pixel, summed in the reference's order (see fused_sum), so
// float32 results are bit-identical to the eager expression.
template <typename T>
typename Acc<T>::type fused_value(const Params& p, const ForwardBuffers& buf, int64_t n,
                                  int64_t c, int64_t y, int64_t x, const int64_t* src_y,
                                  const int64_t* const* src_x) {
  using A = typename Acc<T>::type;
  A same = load(at<T>(buf.same[0], n, c, y, x));
  for (int j = 1; j < p.num_same; ++j) same += load(at<T>(buf.same[j], n, c, y, x));
  if (p.num_low == 0) return relu(same);
  A low = load(at<T>(buf.low[0], n, c, src_y[0], src_x[0][x]));
  for (int k = 1; k < p.num_low; ++k) low += load(at<T>(buf.low[k], n, c, src_y[k], src_x[k][x]));
  return relu(fused_sum(same, low));
}

template <typename T>
void forward(const Params& p, const ForwardBuffers& buf) {
  const int64_t B = p.batch, C = p.channels, H = p.height, W = p.width;
  std::vector<int64_t> col_src[kMaxLowRes];
  const int64_t* src_x[kMaxLowRes] = {};
  for (int k = 0; k < p.num_low; ++k) {
    col_src[k].resize(static_cast<std::size_t>(W));
    for (int64_t x = 0; x < W; ++x) col_src[k][x] = p.cols[k].source(x);
    src_x[k] = col_src[k].data();
  }
  if (channels_innermost(buf.out, C)) {
#pragma omp parallel for num_threads(threads(p)) schedule(static)
    for (int64_t pixel = 0; pixel < B * H * W; ++pixel) {
      const int64_t n = pixel / (H * W), y = (pixel / W) % H, x = pixel % W;
      int64_t src_y[kMaxLowRes];
      for (int k = 0; k < p.num_low; ++k) src_y[k] = p.rows[k].source(y);
      for (int64_t c = 0; c < C; ++c) {
        store(at_mut<T>(buf.out, n, c, y, x), fused_value<T>(p, buf, n, c, y, x, src_y, src_x));
      }
    }
    return;
  }
#pragma omp parallel for num_threads(threads(p)) schedule(static)
  for (int64_t row = 0; row < B * C * H; ++row) {
    const int64_t n = row / (C * H), c = (row / H) % C, y = row % H;
    int64_t src_y[kMaxLowRes];
    for (int k = 0; k < p.num_low; ++k) src_y[k] = p.rows[k].source(y);
    for (int64_t x = 0; x < W; ++x) {
      store(at_mut<T>(buf.out, n, c, y, x), fused_value<T>(p, buf, n, c, y, x, src_y, src_x));
    }
  }
}

template <typename T>
typename Acc<T>::type masked_grad(const BackwardBuffers& buf, int64_t n, int64_t c, int64_t y,
                                  int64_t x) {
  return relu_grad(load(at<T>(buf.grad, n, c, y, x)), load(at<T>(buf.out, n, c, y, x)));
}

template <typename T>
void backward(const Params& p, const BackwardBuffers& buf) {
  using A = typename Acc<T>::type;
  const int64_t B = p.batch, C = p.channels, H = p.height, W = p.width;
  const bool channels_inner = channels_innermost(buf.grad_same, C);
#pragma omp parallel num_threads(threads(p))
  {
    if (channels_inner) {
#pragma omp for schedule(static) nowait
      for (int64_t pixel = 0; pixel < B * H * W; ++pixel) {
        const int64_t n = pixel / (H * W), y = (pixel / W) % H, x = pixel % W;
        for (int64_t c = 0; c < C; ++c) {
          store(at_mut<T>(buf.grad_same, n, c, y, x), masked_grad<T>(buf, n, c, y, x));
        }
      }
    } else {
#pragma omp for schedule(static) nowait
      for (int64_t row = 0; row < B * C * H; ++row) {
        const int64_t n = row / (C * H), c = (row / H) % C, y = row % H;
        for (int64_t x = 0; x < W; ++x) {
          store(at_mut<T>(buf.grad_same, n, c, y, x), masked_grad<T>(buf, n, c, y, x));
        }
      }
    }
    // Each low-res gradient pixel sums its own block in row-major order: no two threads write
    // the same element, and the result does not depend on the thread count.
    for (int k = 0; k < p.num_low; ++k) {
      const int64_t h = p.rows[k].in_size, w = p.cols[k].in_size;
      const int64_t* row_start = buf.row_start[k];
      const int64_t* col_start = buf.col_start[k];
#pragma omp for schedule(dynamic, 16) nowait
      for (int64_t row = 0; row < B * C * h; ++row) {
        const int64_t n = row / (C * h), c = (row / h) % C, ys = row % h;
        for (int64_t xs = 0; xs < w; ++xs) {
          A sum = 0;
          for (int64_t y = row_start[ys]; y < row_start[ys + 1]; ++y) {
            for (int64_t x = col_start[xs]; x < col_start[xs + 1]; ++x) {
              sum += masked_grad<T>(buf, n, c, y, x);
            }
          }
          store(at_mut<T>(buf.grad_low[k], n, c, ys, xs), sum);
        }
      }
    }
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
