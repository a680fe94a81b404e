// CUDA back-end of the fused log-Mel front-end: one launch does framing, window, real FFT,
// power, Mel, log/dB (and the DCT when no top_db clamp is needed). A block owns up to
// kMaxFramesPerBlock consecutive frames of one waveform; their FFTs run side by side in shared
// memory (Stockham ping-pong), so no spectrum ever reaches global memory. With top_db, the
// first kernel also reduces each example's largest band power (atomicMax on float bits, valid
// for non-negative floats) and a second, memory-light kernel applies the clamp. The common FFT
// lengths (n_fft 400, 512, 1024) get kernels whose FFT plan is fixed at compile time.

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "log_mel/log_mel.h"

namespace emohrnet_fast::log_mel {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxFramesPerBlock = 8;
constexpr int kSmemBudget = 32 * 1024;  // per block, leaves room for several blocks per SM
constexpr int kMaxGridY = 65535;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("emohrnet_fast log_mel CUDA: ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

__device__ __forceinline__ float load_sample(const float* x, int64_t i, int64_t length) {
  return __ldg(x + ((i >= 0 && i < length) ? i : reflect_index(i, length)));
}

__device__ __forceinline__ bool is_masked(const masks::Masks& m, int64_t b, int64_t row,
                                          int64_t t) {
  return m.active() && (masks::row_masked(m, b, row) || masks::time_masked(m, b, t));
}

__device__ __forceinline__ float masked_or(float v, const masks::Masks& m, int64_t b,
                                           int64_t row, int64_t t) {
  return is_masked(m, b, row, t) ? __ldg(m.values + b) : v;
}

template <int R>
__device__ __forceinline__ void butterfly(const float2* in, float2* out, int j, int m, int ns,
                                          const float* tw) {
  const int nb = m / R;
  const int k = j % ns;
  float xr[R], xi[R];
  xr[0] = in[j].x;
  xi[0] = in[j].y;
#pragma unroll
  for (int r = 1; r < R; ++r) {
    const float2 a = in[j + r * nb];
    float wr, wi;
    fft::twiddle(tw, fft::stage_twiddle_exponent(k, r, m, ns, R), wr, wi);
    fft::cmul(a.x, a.y, wr, wi, xr[r], xi[r]);
  }
  fft::small_dft<R>(xr, xi);
  const int dst = (j / ns) * ns * R + k;
#pragma unroll
  for (int r = 0; r < R; ++r) out[dst + r * ns] = make_float2(xr[r], xi[r]);
}

// Output q of butterfly j for any prime radix p (O(p) per output).
__device__ void prime_output(const float2* in, float2* out, int j, int q, int m, int ns, int p,
                             const float* tw) {
  const int nb = m / p;
  const int k = j % ns;
  float acc_r = 0.0f, acc_i = 0.0f;
  for (int r = 0; r < p; ++r) {
    const float2 a = in[j + r * nb];
    float wr, wi, yr, yi, vr, vi;
    fft::twiddle(tw, fft::stage_twiddle_exponent(k, r, m, ns, p), wr, wi);
    fft::cmul(a.x, a.y, wr, wi, yr, yi);
    fft::twiddle(tw, 2 * ((r * q) % p) * nb, wr, wi);
    fft::cmul(yr, yi, wr, wi, vr, vi);
    acc_r += vr;
    acc_i += vi;
  }
  out[(j / ns) * ns * p + k + q * ns] = make_float2(acc_r, acc_i);
}

template <int R>
__device__ __forceinline__ void radix_stage(const float2* in, float2* out, int nf, int m, int ns,
                                            const float* tw) {
  const int nb = m / R;
  for (int i = threadIdx.x; i < nf * nb; i += blockDim.x) {
    const int f = i / nb;
    butterfly<R>(in + f * m, out + f * m, i - f * nb, m, ns, tw);
  }
}

// The radix fft::make_plan takes first for a remaining length (4, then 2, 3, 5), or 0 when
// only its generic prime stage would do.
__host__ __device__ constexpr int plan_radix(int rest) {
  return rest % 4 == 0 ? 4 : rest % 2 == 0 ? 2 : rest % 3 == 0 ? 3 : rest % 5 == 0 ? 5 : 0;
}

// make_plan's stages for a complex length M known at compile time: with M and Ns constants,
// the butterflies' index divisions and twiddle exponents fold into multiplies and shifts
// (the runtime plan pays integer divisions by run-time values in every butterfly).
template <int M, int Ns>
__device__ __forceinline__ void fixed_stages(float2*& a, float2*& c, int nf, const float* tw) {
  if constexpr (Ns < M) {
    constexpr int R = plan_radix(M / Ns);
    static_assert(R != 0, "fixed_stages: a length with a prime factor above 5");
    radix_stage<R>(a, c, nf, M, Ns, tw);
    __syncthreads();
    float2* t = a;
    a = c;
    c = t;
    fixed_stages<M, Ns * R>(a, c, nf, tw);
  }
}

// kM: the complex FFT length n_fft / 2 when fixed at compile time (the common n_fft values,
// see log_mel_cuda), 0 for any other length.
template <int kM>
__global__ void __launch_bounds__(kThreads)
    log_mel_kernel(Params p, Buffers buf, fft::Plan plan, int frames_per_block) {
  extern __shared__ float2 smem[];
  const int m = kM > 0 ? kM : p.n_fft / 2;
  const int fpb = frames_per_block;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * fpb;
  const int nf = static_cast<int>(min(static_cast<int64_t>(fpb), p.frames - t0));
  const bool to_dct = p.n_mfcc > 0 && !p.clamp_top_db;
  const float* tw = buf.twiddles;

  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    float2* a = smem;
    float2* c = smem + fpb * m;
    const float* x = buf.waveform + b * p.length;

    for (int i = threadIdx.x; i < nf * m; i += blockDim.x) {
      const int f = i / m, n = i - f * m;
      const int64_t s = (t0 + f) * p.hop_length - p.n_fft / 2 + 2 * n;
      a[i] = make_float2(load_sample(x, s, p.length) * __ldg(buf.window + 2 * n),
                         load_sample(x, s + 1, p.length) * __ldg(buf.window + 2 * n + 1));
    }
    __syncthreads();

    if constexpr (kM > 0) {
      fixed_stages<kM, 1>(a, c, nf, tw);
    } else {
      int ns = 1;
      for (int st = 0; st < plan.n_stages; ++st) {
        const int radix = plan.radix[st];
        switch (radix) {
          case 2:
            radix_stage<2>(a, c, nf, m, ns, tw);
            break;
          case 3:
            radix_stage<3>(a, c, nf, m, ns, tw);
            break;
          case 4:
            radix_stage<4>(a, c, nf, m, ns, tw);
            break;
          case 5:
            radix_stage<5>(a, c, nf, m, ns, tw);
            break;
          default: {
            const int nb = m / radix;
            for (int i = threadIdx.x; i < nf * m; i += blockDim.x) {
              const int f = i / m, rem = i - f * m;
              const int q = rem / nb;
              prime_output(a + f * m, c + f * m, rem - q * nb, q, m, ns, radix, tw);
            }
          }
        }
        __syncthreads();
        float2* t = a;
        a = c;
        c = t;
        ns *= radix;
      }
    }

    // The other ping-pong buffer holds the power spectrum: (m + 1) floats per frame fit in
    // the 2m floats it has.
    float* power = reinterpret_cast<float*>(c);
    for (int i = threadIdx.x; i < nf * (m + 1); i += blockDim.x) {
      const int f = i / (m + 1), k = i - f * (m + 1);
      const float2 za = a[f * m + (k == m ? 0 : k)];
      const float2 zb = a[f * m + (k == 0 ? 0 : m - k)];
      float xr, xi;
      fft::real_fft_bin(tw, za.x, za.y, zb.x, zb.y, k, xr, xi);
      power[i] = bin_power(xr, xi, p.power);
    }
    __syncthreads();

    float* scaled = reinterpret_cast<float*>(smem + 2 * fpb * m);
    float local_max = 0.0f;
    // Frame index fastest: neighbouring threads store neighbouring frames of one band.
    for (int i = threadIdx.x; i < nf * p.n_bands; i += blockDim.x) {
      const int band = i / nf, f = i - band * nf;
      const float* frame_power = power + f * (m + 1);
      float acc;
      if (p.use_mel) {
        const int begin = __ldg(buf.fb_offsets + band);
        const int width = __ldg(buf.fb_offsets + band + 1) - begin;
        const float* bins = frame_power + __ldg(buf.fb_first_bin + band);
        acc = 0.0f;
        for (int w = 0; w < width; ++w) acc += __ldg(buf.fb_weights + begin + w) * bins[w];
      } else {
        acc = frame_power[band];
      }
      local_max = acc > local_max ? acc : local_max;
      const float v = to_output_scale(acc, p);
      if (to_dct) {
        scaled[f * p.n_bands + band] = v;
      } else if (p.n_mfcc > 0) {
        buf.bands_scratch[(b * p.n_bands + band) * p.frames + t0 + f] = v;
      } else {
        buf.out[(b * p.n_bands + band) * p.frames + t0 + f] = masked_or(v, buf.masks, b, band, t0 + f);
      }
    }

    if (to_dct) {
      __syncthreads();
      for (int i = threadIdx.x; i < nf * p.n_mfcc; i += blockDim.x) {
        const int coef = i / nf, f = i - coef * nf;
        float acc = 0.0f;
        for (int band = 0; band < p.n_bands; ++band) {
          acc += __ldg(buf.dct + band * p.n_mfcc + coef) * scaled[f * p.n_bands + band];
        }
        buf.out[(b * p.n_mfcc + coef) * p.frames + t0 + f] =
            masked_or(acc, buf.masks, b, coef, t0 + f);
      }
    }

    if (p.clamp_top_db) {
      for (int offset = 16; offset > 0; offset >>= 1) {
        local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffffu, local_max, offset));
      }
      if ((threadIdx.x & 31) == 0) {
        atomicMax(reinterpret_cast<unsigned int*>(buf.example_max) + b,
                  __float_as_uint(local_max));
      }
    }
    __syncthreads();  // the next example reuses shared memory
  }
}

__global__ void clamp_kernel(Params p, Buffers buf) {
  const int64_t per_example = static_cast<int64_t>(p.n_bands) * p.frames;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    const float floor = top_db_floor(buf.example_max[b], p);
    float* x = buf.out + b * per_example;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_example;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float v = x[i];
      // Read everything, write only what the clamp changes; masked features keep their value.
      if (v < floor && !is_masked(buf.masks, b, i / p.frames, i % p.frames)) x[i] = floor;
    }
  }
}

// MFCC with top_db: clamp the stored log bands of one frame and take the DCT.
__global__ void clamp_dct_kernel(Params p, Buffers buf) {
  const int64_t per_example = static_cast<int64_t>(p.n_mfcc) * p.frames;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    const float floor = top_db_floor(buf.example_max[b], p);
    const float* bands = buf.bands_scratch + b * p.n_bands * p.frames;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_example;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int coef = static_cast<int>(i / p.frames);
      const int64_t t = i - coef * p.frames;
      float acc = 0.0f;
      for (int band = 0; band < p.n_bands; ++band) {
        acc += __ldg(buf.dct + band * p.n_mfcc + coef) *
               clamp_below(bands[band * p.frames + t], floor);
      }
      buf.out[b * per_example + i] = masked_or(acc, buf.masks, b, coef, t);
    }
  }
}

template <int kM>
void launch_log_mel(dim3 grid, std::size_t smem, cudaStream_t stream, const Params& p,
                    const Buffers& buf, const fft::Plan& plan, int frames_per_block) {
  if (smem > 48 * 1024) {
    check(cudaFuncSetAttribute(log_mel_kernel<kM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          "raising the shared-memory limit");
  }
  log_mel_kernel<kM><<<grid, kThreads, smem, stream>>>(p, buf, plan, frames_per_block);
  check(cudaGetLastError(), "launching log_mel_kernel");
}

}  // namespace

void log_mel_cuda(const Params& p, const Buffers& buf, std::uintptr_t stream_handle) {
  auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const fft::Plan plan = fft::make_plan(p.n_fft / 2);
  const int m = p.n_fft / 2;
  const bool to_dct = p.n_mfcc > 0 && !p.clamp_top_db;
  const int bytes_per_frame =
      2 * m * static_cast<int>(sizeof(float2)) + (to_dct ? p.n_bands * 4 : 0);
  const int fpb = std::max(1, std::min(kMaxFramesPerBlock, kSmemBudget / bytes_per_frame));
  const std::size_t smem = static_cast<std::size_t>(fpb) * bytes_per_frame;
  if (p.clamp_top_db) {
    check(cudaMemsetAsync(buf.example_max, 0, p.batch * sizeof(float), stream),
          "clearing the per-example maxima");
  }
  const int grid_y = static_cast<int>(std::min<int64_t>(p.batch, kMaxGridY));
  const dim3 grid(static_cast<unsigned>((p.frames + fpb - 1) / fpb), grid_y);
  switch (m) {  // n_fft 512, 400, 1024
    case 256:
      launch_log_mel<256>(grid, smem, stream, p, buf, plan, fpb);
      break;
    case 200:
      launch_log_mel<200>(grid, smem, stream, p, buf, plan, fpb);
      break;
    case 512:
      launch_log_mel<512>(grid, smem, stream, p, buf, plan, fpb);
      break;
    default:
      launch_log_mel<0>(grid, smem, stream, p, buf, plan, fpb);
  }

  if (p.clamp_top_db) {
    const int64_t rows = p.n_mfcc > 0 ? p.n_mfcc : p.n_bands;
    const int64_t blocks_x = std::min<int64_t>((rows * p.frames + kThreads - 1) / kThreads, 4096);
    const dim3 clamp_grid(static_cast<unsigned>(blocks_x), grid_y);
    if (p.n_mfcc > 0) {
      clamp_dct_kernel<<<clamp_grid, kThreads, 0, stream>>>(p, buf);
    } else {
      clamp_kernel<<<clamp_grid, kThreads, 0, stream>>>(p, buf);
    }
    check(cudaGetLastError(), "launching the top_db clamp");
  }
}

}  // namespace emohrnet_fast::log_mel
