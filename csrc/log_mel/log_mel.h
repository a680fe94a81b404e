#pragma once
// Fused log-Mel front-end: reflect-pad framing -> window -> real FFT -> |X|^power ->
// sparse Mel filterbank (or none) -> power | log | dB -> optional DCT (MFCC).
// Every pointer is validated by the Python layer (emohrnet_fast/ops/log_mel.py) before it
// gets here: dtypes, devices, contiguity and sizes are the caller's contract.

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "common/fft.h"
#include "common/host_device.h"
#include "common/masks.h"

namespace emohrnet_fast::log_mel {

enum class Output : int { kPower = 0, kLog = 1, kDb = 2 };

struct Params {
  int64_t batch = 0;     // B: waveforms
  int64_t length = 0;    // samples per waveform (>= 1)
  int64_t frames = 0;    // 1 + length / hop_length
  int n_fft = 0;         // even, >= 2
  int hop_length = 0;    // >= 1
  int n_bands = 0;       // n_mels, or n_fft/2 + 1 without a Mel filterbank
  int n_mfcc = 0;        // 0: no DCT
  bool use_mel = false;  // false: bands are the FFT bins themselves
  int power = 2;         // 1: |X|, 2: |X|^2
  Output output = Output::kDb;
  float log_eps = 1e-6f;        // Output::kLog: log(x + eps)
  float db_amin = 1e-10f;       // Output::kDb: multiplier * log10(max(x, amin))
  float db_multiplier = 10.0f;  // 10 for power, 20 for magnitude
  bool clamp_top_db = false;    // per-example clamp at max_dB - top_db (Output::kDb only)
  float top_db = 80.0f;
  int num_threads = 0;  // CPU: OpenMP threads (0: OpenMP's default)
};

struct Buffers {
  const float* waveform = nullptr;      // (B, length)
  const float* window = nullptr;        // (n_fft,) zero-padded, centred
  const float* twiddles = nullptr;      // (n_fft, 2) cos, -sin of 2*pi*t/n_fft
  const float* fb_weights = nullptr;    // (nnz,) band m: fb_weights[fb_offsets[m] ...]
  const int32_t* fb_offsets = nullptr;  // (n_mels + 1,)
  const int32_t* fb_first_bin = nullptr;  // (n_mels,) FFT bin of each band's first weight
  const float* dct = nullptr;           // (n_bands, n_mfcc) when n_mfcc > 0
  float* out = nullptr;                 // (B, n_mfcc or n_bands, frames)
  // Only with n_mfcc > 0 and clamp_top_db: the unclamped log bands, (B, n_bands, frames),
  // because the DCT needs the clamp, and the clamp needs every frame of the example.
  float* bands_scratch = nullptr;
  // CUDA with clamp_top_db only: per-example maximum band power (B,), reduced by atomicMax.
  float* example_max = nullptr;
  // Optional SpecAugment masks over the output (rows, frames), applied after the top_db
  // clamp: the clamp and its maximum only ever see unmasked features.
  masks::Masks masks;
};

void log_mel_cpu(const Params& p, const Buffers& buf);
void log_mel_cuda(const Params& p, const Buffers& buf, std::uintptr_t stream);

// ---- math shared by both back-ends -------------------------------------------------------

// Index into a signal of `length` samples with reflection at both ends (numpy.pad 'reflect';
// equals torch's reflect padding whenever the pad is shorter than the signal, and keeps
// reflecting, never reading out of bounds, when it is not).
EF_HD int64_t reflect_index(int64_t i, int64_t length) {
  if (length == 1) return 0;
  const int64_t period = 2 * (length - 1);
  i %= period;
  if (i < 0) i += period;
  return i < length ? i : period - i;
}

// |X|^power of one bin.
EF_HD float bin_power(float re, float im, int power) {
  const float sq = re * re + im * im;
  if (power == 2) return sq;
  // re^2 + im^2 overflows for |X| > ~1.8e19 although |X| itself fits in a float: only then
  // take the (slower, rescaling) hypot, so the usual bin stays one sqrt and NaN/Inf bins
  // (non-finite parts fail the test) still come out NaN/Inf as before.
  if (sq > FLT_MAX && fabsf(re) <= FLT_MAX && fabsf(im) <= FLT_MAX) return hypotf(re, im);
  return sqrtf(sq);
}

EF_HD float to_output_scale(float x, const Params& p) {
  switch (p.output) {
    case Output::kLog:
      return logf(x + p.log_eps);
    case Output::kDb:
      // Written so that NaN compares false and passes through.
      return p.db_multiplier * log10f(x < p.db_amin ? p.db_amin : x);
    default:
      return x;
  }
}

// Lowest value the top_db clamp lets through for an example whose largest band power is
// `max_power`.
EF_HD float top_db_floor(float max_power, const Params& p) {
  return to_output_scale(max_power, p) - p.top_db;
}

// NaN stays NaN (the clamp only raises finite values), so bad input stays visible.
EF_HD float clamp_below(float x, float floor) { return x < floor ? floor : x; }

}  // namespace emohrnet_fast::log_mel
