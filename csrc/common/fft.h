#pragma once
// Mixed-radix Stockham FFT pieces shared by the CPU and CUDA back-ends.
//
// A real FFT of even length N is computed as a complex FFT of length M = N/2 over
// z[n] = x[2n] + i*x[2n+1], followed by the split step in `real_fft_bin`.
// Twiddles come from one table per N: tw[2t] = cos(2*pi*t/N), tw[2t+1] = -sin(2*pi*t/N),
// built in float64 on the Python side and rounded once, so no kernel calls sin/cos.
//
// Stockham stage with radix R after earlier stages whose radices multiply to Ns:
// butterfly j (0 <= j < M/R) reads in[j + r*M/R], multiplies input r by W_{Ns*R}^{(j%Ns)*r},
// takes a length-R DFT and writes out[(j/Ns)*Ns*R + j%Ns + r*Ns]. Output is in natural order.

#include <cstdint>

#include "host_device.h"

namespace emohrnet_fast::fft {

constexpr int kMaxStages = 16;

struct Plan {
  int n = 1;  // complex length M
  int n_stages = 0;
  int radix[kMaxStages] = {};
};

// Radix 4 first (fewest passes), then 2, 3, 5; whatever is left is handled by the generic
// O(p^2) prime stage, so every length works and lengths with small factors are fast.
inline Plan make_plan(int n) {
  Plan plan;
  plan.n = n;
  int rest = n;
  for (int p : {4, 2, 3, 5}) {
    while (rest % p == 0) {
      plan.radix[plan.n_stages++] = p;
      rest /= p;
    }
  }
  for (int p = 7; rest > 1; p += 2) {
    while (rest % p == 0) {
      plan.radix[plan.n_stages++] = p;
      rest /= p;
    }
  }
  return plan;
}

// Twiddle W_N^e for the table of one N (0 <= e < N).
EF_HD void twiddle(const float* tw, int e, float& wr, float& wi) {
  wr = tw[2 * e];
  wi = tw[2 * e + 1];
}

// Exponent in the length-N table of W_{Ns*R}^{k*r} for a length-M = N/2 complex FFT.
EF_HD int stage_twiddle_exponent(int k, int r, int m, int ns, int radix) {
  return 2 * k * r * (m / (ns * radix));
}

EF_HD void cmul(float ar, float ai, float br, float bi, float& cr, float& ci) {
  cr = ar * br - ai * bi;
  ci = ar * bi + ai * br;
}

// In-place DFTs of length R on values held in registers (forward, e^{-i...}).
template <int R>
EF_HD void small_dft(float* re, float* im);

template <>
EF_HD void small_dft<2>(float* re, float* im) {
  const float r0 = re[0], i0 = im[0];
  re[0] = r0 + re[1];
  im[0] = i0 + im[1];
  re[1] = r0 - re[1];
  im[1] = i0 - im[1];
}

template <>
EF_HD void small_dft<4>(float* re, float* im) {
  const float s0r = re[0] + re[2], s0i = im[0] + im[2];
  const float d0r = re[0] - re[2], d0i = im[0] - im[2];
  const float s1r = re[1] + re[3], s1i = im[1] + im[3];
  const float d1r = re[1] - re[3], d1i = im[1] - im[3];
  re[0] = s0r + s1r;
  im[0] = s0i + s1i;
  re[2] = s0r - s1r;
  im[2] = s0i - s1i;
  // -i * d1 = (d1i, -d1r)
  re[1] = d0r + d1i;
  im[1] = d0i - d1r;
  re[3] = d0r - d1i;
  im[3] = d0i + d1r;
}

template <>
EF_HD void small_dft<3>(float* re, float* im) {
  constexpr float kC = -0.5f;                    // cos(2pi/3)
  constexpr float kS = 0.86602540378443864676f;  // sin(2pi/3)
  const float sr = re[1] + re[2], si = im[1] + im[2];
  const float dr = re[1] - re[2], di = im[1] - im[2];
  const float mr = re[0] + kC * sr, mi = im[0] + kC * si;
  re[0] += sr;
  im[0] += si;
  re[1] = mr + kS * di;
  im[1] = mi - kS * dr;
  re[2] = mr - kS * di;
  im[2] = mi + kS * dr;
}

template <>
EF_HD void small_dft<5>(float* re, float* im) {
  constexpr float kC1 = 0.30901699437494742410f;   // cos(2pi/5)
  constexpr float kC2 = -0.80901699437494742410f;  // cos(4pi/5)
  constexpr float kS1 = 0.95105651629515357212f;   // sin(2pi/5)
  constexpr float kS2 = 0.58778525229247312917f;   // sin(4pi/5)
  const float s1r = re[1] + re[4], s1i = im[1] + im[4];
  const float d1r = re[1] - re[4], d1i = im[1] - im[4];
  const float s2r = re[2] + re[3], s2i = im[2] + im[3];
  const float d2r = re[2] - re[3], d2i = im[2] - im[3];
  const float a1r = re[0] + kC1 * s1r + kC2 * s2r, a1i = im[0] + kC1 * s1i + kC2 * s2i;
  const float a2r = re[0] + kC2 * s1r + kC1 * s2r, a2i = im[0] + kC2 * s1i + kC1 * s2i;
  // b = -i * (S1*d1 + S2*d2) etc.
  const float b1r = kS1 * d1i + kS2 * d2i, b1i = -(kS1 * d1r + kS2 * d2r);
  const float b2r = kS2 * d1i - kS1 * d2i, b2i = -(kS2 * d1r - kS1 * d2r);
  re[0] += s1r + s2r;
  im[0] += s1i + s2i;
  re[1] = a1r + b1r;
  im[1] = a1i + b1i;
  re[4] = a1r - b1r;
  im[4] = a1i - b1i;
  re[2] = a2r + b2r;
  im[2] = a2i + b2i;
  re[3] = a2r - b2r;
  im[3] = a2i - b2i;
}

// One bin X[k] (0 <= k <= M) of the length-2M real FFT from Z = FFT_M(z).
EF_HD void real_fft_bin(const float* tw, float zkr, float zki, float zmr, float zmi, int k,
                        float& xr, float& xi) {
  // zm holds Z[M-k]; b = conj(Z[M-k]).
  const float br = zmr, bi = -zmi;
  const float er = 0.5f * (zkr + br), ei = 0.5f * (zki + bi);
  // O = (Z[k] - b) / (2i)
  const float dr = zkr - br, di = zki - bi;
  const float odd_r = 0.5f * di, odd_i = -0.5f * dr;
  float wr, wi;
  twiddle(tw, k, wr, wi);
  float tr, ti;
  cmul(wr, wi, odd_r, odd_i, tr, ti);
  xr = er + tr;
  xi = ei + ti;
}

}  // namespace emohrnet_fast::fft
