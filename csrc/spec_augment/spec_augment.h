#pragma once
// SpecAugment masking in one pass: out = masked ? value[b] : in, over (B, R, F, T) features
// (R: any channels between batch and features). Masks are drawn in Python (torch's
// generator) and arrive as [start, end) ranges, so the kernel is deterministic.

#include <cstdint>

#include "common/masks.h"

namespace emohrnet_fast::spec_augment {

struct Params {
  int64_t batch = 0;
  int64_t rows_per_example = 0;  // R * F
  int64_t features = 0;          // F: the axis frequency masks index
  int64_t frames = 0;            // T
  int num_threads = 0;           // CPU: OpenMP threads (0: OpenMP's default)
};

struct Buffers {
  const float* in = nullptr;  // (B, R, F, T) contiguous
  float* out = nullptr;       // same shape; may equal `in` (in place)
  masks::Masks masks;
};

void spec_augment_cpu(const Params& p, const Buffers& buf);
void spec_augment_cuda(const Params& p, const Buffers& buf, std::uintptr_t stream);

}  // namespace emohrnet_fast::spec_augment
