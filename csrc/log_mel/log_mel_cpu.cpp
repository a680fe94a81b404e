// CPU back-end of the fused log-Mel front-end.
//
// Work unit: a tile of kLanes consecutive frames of one waveform. Every array in a tile is
// stored lane-minor ([element][lane]), so each butterfly, bin and band is a loop over kLanes
// independent frames with identical twiddles: the compiler turns those loops into SIMD code
// without intrinsics, and one tile's scratch (a few tens of KiB) stays in L1/L2.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "log_mel/log_mel.h"

namespace emohrnet_fast::log_mel {
namespace {

constexpr int kLanes = 8;

struct TileScratch {
  std::vector<float> re0, im0, re1, im1, power, bands, prime;

  TileScratch(const Params& p) {
    const std::size_t m = static_cast<std::size_t>(p.n_fft / 2);
    re0.resize(m * kLanes);
    im0.resize(m * kLanes);
    re1.resize(m * kLanes);
    im1.resize(m * kLanes);
    power.resize((m + 1) * kLanes);
    bands.resize(static_cast<std::size_t>(p.n_bands) * kLanes);
    prime.resize(2 * m * kLanes);
  }
};

template <int R>
void stockham_stage(const float* __restrict in_re, const float* __restrict in_im,
                    float* __restrict out_re, float* __restrict out_im, int m, int ns,
                    const float* __restrict tw) {
  const int nb = m / R;
  for (int j = 0; j < nb; ++j) {
    const int k = j % ns;
    float wr[R], wi[R];
    for (int r = 1; r < R; ++r) {
      fft::twiddle(tw, fft::stage_twiddle_exponent(k, r, m, ns, R), wr[r], wi[r]);
    }
    const int dst = (j / ns) * ns * R + k;
#pragma GCC ivdep
    for (int v = 0; v < kLanes; ++v) {
      float xr[R], xi[R];
      xr[0] = in_re[j * kLanes + v];
      xi[0] = in_im[j * kLanes + v];
      for (int r = 1; r < R; ++r) {
        const int src = (j + r * nb) * kLanes + v;
        fft::cmul(in_re[src], in_im[src], wr[r], wi[r], xr[r], xi[r]);
      }
      fft::small_dft<R>(xr, xi);
      for (int r = 0; r < R; ++r) {
        out_re[(dst + r * ns) * kLanes + v] = xr[r];
        out_im[(dst + r * ns) * kLanes + v] = xi[r];
      }
    }
  }
}

// Any prime radix, O(p^2) per butterfly; `tmp` holds p * kLanes complex values.
void prime_stage(const float* __restrict in_re, const float* __restrict in_im,
                 float* __restrict out_re, float* __restrict out_im, int m, int ns, int p,
                 const float* __restrict tw, float* __restrict tmp) {
  const int nb = m / p;
  float* tmp_re = tmp;
  float* tmp_im = tmp + p * kLanes;
  for (int j = 0; j < nb; ++j) {
    const int k = j % ns;
    const int dst = (j / ns) * ns * p + k;
    for (int r = 0; r < p; ++r) {
      float wr, wi;
      fft::twiddle(tw, fft::stage_twiddle_exponent(k, r, m, ns, p), wr, wi);
      for (int v = 0; v < kLanes; ++v) {
        const int src = (j + r * nb) * kLanes + v;
        fft::cmul(in_re[src], in_im[src], wr, wi, tmp_re[r * kLanes + v], tmp_im[r * kLanes + v]);
      }
    }
    for (int q = 0; q < p; ++q) {
      float acc_re[kLanes] = {}, acc_im[kLanes] = {};
      for (int r = 0; r < p; ++r) {
        float wr, wi;
        fft::twiddle(tw, 2 * ((r * q) % p) * nb, wr, wi);
        for (int v = 0; v < kLanes; ++v) {
          float yr, yi;
          fft::cmul(tmp_re[r * kLanes + v], tmp_im[r * kLanes + v], wr, wi, yr, yi);
          acc_re[v] += yr;
          acc_im[v] += yi;
        }
      }
      for (int v = 0; v < kLanes; ++v) {
        out_re[(dst + q * ns) * kLanes + v] = acc_re[v];
        out_im[(dst + q * ns) * kLanes + v] = acc_im[v];
      }
    }
  }
}

// Frames t0 .. t0 + valid - 1 of waveform b; lanes past `valid` repeat the last frame so
// that every read stays in bounds, and are never stored.
void load_frames(const Params& p, const Buffers& buf, int64_t b, int64_t t0, float* re,
                 float* im) {
  const float* x = buf.waveform + b * p.length;
  const float* win = buf.window;
  const int m = p.n_fft / 2;
  for (int v = 0; v < kLanes; ++v) {
    const int64_t t = std::min<int64_t>(t0 + v, p.frames - 1);
    const int64_t start = t * p.hop_length - p.n_fft / 2;
    if (start >= 0 && start + p.n_fft <= p.length) {
      const float* frame = x + start;
      for (int n = 0; n < m; ++n) {
        re[n * kLanes + v] = frame[2 * n] * win[2 * n];
        im[n * kLanes + v] = frame[2 * n + 1] * win[2 * n + 1];
      }
    } else {
      for (int n = 0; n < m; ++n) {
        re[n * kLanes + v] = x[reflect_index(start + 2 * n, p.length)] * win[2 * n];
        im[n * kLanes + v] = x[reflect_index(start + 2 * n + 1, p.length)] * win[2 * n + 1];
      }
    }
  }
}

// Returns the tile's largest band power (NaN ignored), for the top_db clamp.
float process_tile(const Params& p, const Buffers& buf, const fft::Plan& plan, int64_t b,
                   int64_t t0, TileScratch& s) {
  const int m = p.n_fft / 2;
  const int valid = static_cast<int>(std::min<int64_t>(kLanes, p.frames - t0));
  float* re = s.re0.data();
  float* im = s.im0.data();
  float* re_next = s.re1.data();
  float* im_next = s.im1.data();
  load_frames(p, buf, b, t0, re, im);

  int ns = 1;
  for (int st = 0; st < plan.n_stages; ++st) {
    const int radix = plan.radix[st];
    switch (radix) {
      case 2:
        stockham_stage<2>(re, im, re_next, im_next, m, ns, buf.twiddles);
        break;
      case 3:
        stockham_stage<3>(re, im, re_next, im_next, m, ns, buf.twiddles);
        break;
      case 4:
        stockham_stage<4>(re, im, re_next, im_next, m, ns, buf.twiddles);
        break;
      case 5:
        stockham_stage<5>(re, im, re_next, im_next, m, ns, buf.twiddles);
        break;
      default:
        prime_stage(re, im, re_next, im_next, m, ns, radix, buf.twiddles, s.prime.data());
    }
    std::swap(re, re_next);
    std::swap(im, im_next);
    ns *= radix;
  }

  float* power = s.power.data();
  for (int k = 0; k <= m; ++k) {
    const int ka = k % m, kb = (m - k) % m;
#pragma GCC ivdep
    for (int v = 0; v < kLanes; ++v) {
      float xr, xi;
      fft::real_fft_bin(buf.twiddles, re[ka * kLanes + v], im[ka * kLanes + v],
                        re[kb * kLanes + v], im[kb * kLanes + v], k, xr, xi);
      power[k * kLanes + v] = bin_power(xr, xi, p.power);
    }
  }

  const bool to_dct = p.n_mfcc > 0 && !p.clamp_top_db;
  float* scaled = s.bands.data();
  float tile_max = 0.0f;
  for (int band = 0; band < p.n_bands; ++band) {
    float acc[kLanes];
    if (p.use_mel) {
      for (int v = 0; v < kLanes; ++v) acc[v] = 0.0f;
      const int begin = buf.fb_offsets[band], width = buf.fb_offsets[band + 1] - begin;
      const float* weights = buf.fb_weights + begin;
      const float* bins = power + static_cast<std::size_t>(buf.fb_first_bin[band]) * kLanes;
      for (int i = 0; i < width; ++i) {
        for (int v = 0; v < kLanes; ++v) acc[v] += weights[i] * bins[i * kLanes + v];
      }
    } else {
      for (int v = 0; v < kLanes; ++v) acc[v] = power[band * kLanes + v];
    }
    for (int v = 0; v < valid; ++v) tile_max = acc[v] > tile_max ? acc[v] : tile_max;
    for (int v = 0; v < kLanes; ++v) scaled[band * kLanes + v] = to_output_scale(acc[v], p);
    if (to_dct) continue;
    float* dst = (p.n_mfcc > 0 ? buf.bands_scratch : buf.out) +
                 (b * p.n_bands + band) * p.frames + t0;
    for (int v = 0; v < valid; ++v) dst[v] = scaled[band * kLanes + v];
  }

  if (to_dct) {
    for (int c = 0; c < p.n_mfcc; ++c) {
      float acc[kLanes] = {};
      for (int band = 0; band < p.n_bands; ++band) {
        const float d = buf.dct[band * p.n_mfcc + c];
        for (int v = 0; v < kLanes; ++v) acc[v] += d * scaled[band * kLanes + v];
      }
      float* dst = buf.out + (b * p.n_mfcc + c) * p.frames + t0;
      for (int v = 0; v < valid; ++v) dst[v] = acc[v];
    }
  }
  return tile_max;
}

// Second pass for the per-example top_db clamp (and the DCT that has to follow it).
void clamp_example(const Params& p, const Buffers& buf, int64_t b, float max_power) {
  const float floor = top_db_floor(max_power, p);
  const int64_t frames = p.frames;
  if (p.n_mfcc == 0) {
    float* x = buf.out + b * p.n_bands * frames;
    for (int64_t i = 0; i < p.n_bands * frames; ++i) x[i] = clamp_below(x[i], floor);
    return;
  }
  float* bands = buf.bands_scratch + b * p.n_bands * frames;
  for (int64_t i = 0; i < p.n_bands * frames; ++i) bands[i] = clamp_below(bands[i], floor);
  float* out = buf.out + b * p.n_mfcc * frames;
  std::fill(out, out + p.n_mfcc * frames, 0.0f);
  for (int c = 0; c < p.n_mfcc; ++c) {
    float* row = out + c * frames;
    for (int band = 0; band < p.n_bands; ++band) {
      const float d = buf.dct[band * p.n_mfcc + c];
      const float* src = bands + band * frames;
      for (int64_t t = 0; t < frames; ++t) row[t] += d * src[t];
    }
  }
}

// SpecAugment after everything else, touching only the masked elements of example b.
void fill_masks(const Params& p, const Buffers& buf, int64_t b) {
  const masks::Masks& m = buf.masks;
  const int64_t rows = p.n_mfcc > 0 ? p.n_mfcc : p.n_bands;
  const float value = m.values[b];
  const int32_t* time = m.time + 2 * b * m.n_time;
  for (int64_t row = 0; row < rows; ++row) {
    float* x = buf.out + (b * rows + row) * p.frames;
    if (masks::row_masked(m, b, row)) {
      std::fill(x, x + p.frames, value);
      continue;
    }
    for (int i = 0; i < m.n_time; ++i) {
      const int64_t start = std::clamp<int64_t>(time[2 * i], 0, p.frames);
      const int64_t end = std::clamp<int64_t>(time[2 * i + 1], start, p.frames);
      std::fill(x + start, x + end, value);
    }
  }
}

}  // namespace

void log_mel_cpu(const Params& p, const Buffers& buf) {
  const fft::Plan plan = fft::make_plan(p.n_fft / 2);
  const int64_t tiles_per_example = (p.frames + kLanes - 1) / kLanes;
  const int64_t n_tiles = p.batch * tiles_per_example;
  std::vector<float> tile_max(p.clamp_top_db ? n_tiles : 0);
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();

#pragma omp parallel num_threads(threads)
  {
    TileScratch scratch(p);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n_tiles; ++i) {
      const int64_t b = i / tiles_per_example;
      const int64_t t0 = (i % tiles_per_example) * kLanes;
      const float mx = process_tile(p, buf, plan, b, t0, scratch);
      if (p.clamp_top_db) tile_max[i] = mx;
    }
    if (p.clamp_top_db) {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < p.batch; ++b) {
        float mx = 0.0f;
        for (int64_t t = 0; t < tiles_per_example; ++t) {
          const float v = tile_max[b * tiles_per_example + t];
          mx = v > mx ? v : mx;
        }
        clamp_example(p, buf, b, mx);
      }
    }
    if (buf.masks.active()) {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < p.batch; ++b) fill_masks(p, buf, b);
    }
  }
}

}  // namespace emohrnet_fast::log_mel
