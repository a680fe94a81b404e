#pragma once
// float16 / bfloat16 storage types for the CPU kernels, with exact conversions to float and
// round-to-nearest-even conversions back (the rounding torch uses), written with integer bit
// operations so they need no compiler extension (_Float16) or CPU feature (F16C). The CUDA
// kernels use cuda_fp16.h / cuda_bf16.h instead.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace emohrnet_fast {

struct Half {
  uint16_t bits;
};

struct BFloat16 {
  uint16_t bits;
};

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

inline float to_float(Half h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // Inf/NaN
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline Half to_half(float x) {
  const uint32_t f = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((f >> 16) & 0x8000u);
  const uint32_t magnitude = f & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};  // quiet NaN
  if (magnitude >= 0x47800000u) return {static_cast<uint16_t>(sign | 0x7c00u)};  // >= 2^16: Inf
  // Below 2^-25 everything rounds to zero (2^-25 itself is a tie, and zero is even).
  if (magnitude < 0x33000000u) return {sign};
  const int exponent = static_cast<int>(magnitude >> 23) - 127 + 15;  // biased, as in a half
  const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  // A normal half keeps 10 of the 23 fraction bits; a subnormal one (exponent <= 0) keeps
  // fewer, with the leading 1 shifted into the fraction.
  const int drop = exponent > 0 ? 13 : 14 - exponent;
  uint32_t kept = significand >> drop;
  const uint32_t rest = significand & ((1u << drop) - 1u);
  const uint32_t halfway = 1u << (drop - 1);
  if (rest > halfway || (rest == halfway && (kept & 1u))) ++kept;
  // Normal: a carry out of the fraction bumps the exponent (up to Inf), as it should.
  const uint32_t encoded =
      exponent > 0 ? (static_cast<uint32_t>(exponent) << 10) + (kept - 0x400u) : kept;
  return {static_cast<uint16_t>(sign | encoded)};
}

inline float to_float(BFloat16 b) { return bits_float(static_cast<uint32_t>(b.bits) << 16); }

inline BFloat16 to_bfloat16(float x) {
  const uint32_t f = float_bits(x);
  if ((f & 0x7fffffffu) > 0x7f800000u) {
    return {static_cast<uint16_t>((f >> 16) | 0x40u)};  // keep NaN a (quiet) NaN
  }
  const uint32_t rounding = 0x7fffu + ((f >> 16) & 1u);  // to nearest, ties to even
  return {static_cast<uint16_t>((f + rounding) >> 16)};
}

}  // namespace emohrnet_fast
