#pragma once
// SpecAugment mask ranges, shared by the spec_augment op and the log_mel epilogue (which can
// write masked features directly). Ranges are [start, end) pairs; any int32 values are safe:
// they are only compared, never used as indices.

#include <cstdint>

#include "host_device.h"

namespace emohrnet_fast::masks {

struct Masks {
  const int32_t* freq = nullptr;  // (B, n_freq, 2) [start, end) along the feature axis
  const int32_t* time = nullptr;  // (B, n_time, 2) [start, end) along the frame axis
  const float* values = nullptr;  // (B,) fill value of each example
  int n_freq = 0;
  int n_time = 0;

  EF_HD bool active() const { return values != nullptr; }
};

EF_HD bool in_any_range(const int32_t* ranges, int count, int64_t index) {
  for (int i = 0; i < count; ++i) {
    if (index >= ranges[2 * i] && index < ranges[2 * i + 1]) return true;
  }
  return false;
}

EF_HD bool row_masked(const Masks& m, int64_t b, int64_t row) {
  return in_any_range(m.freq + 2 * b * m.n_freq, m.n_freq, row);
}

EF_HD bool time_masked(const Masks& m, int64_t b, int64_t t) {
  return in_any_range(m.time + 2 * b * m.n_time, m.n_time, t);
}

}  // namespace emohrnet_fast::masks
