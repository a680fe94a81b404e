// CPU back-end of SpecAugment: per feature row, either one fill (row inside a frequency
// mask: the input is not even read) or one copy plus a fill per time mask.

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "common/huge_pages.h"
#include "spec_augment/spec_augment.h"

namespace emohrnet_fast::spec_augment {

void spec_augment_cpu(const Params& p, const Buffers& buf) {
  const int64_t rows = p.batch * p.rows_per_example;
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  const int64_t frames = p.frames;
  const masks::Masks& m = buf.masks;
  if (buf.out != buf.in) advise_huge_pages(buf.out, sizeof(float) * rows * frames);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / p.rows_per_example;
    const int64_t f = (row % p.rows_per_example) % p.features;
    const float value = m.values[b];
    float* out = buf.out + row * frames;
    if (masks::row_masked(m, b, f)) {
      std::fill(out, out + frames, value);
      continue;
    }
    const float* in = buf.in + row * frames;
    if (in != out) std::memcpy(out, in, sizeof(float) * frames);
    const int32_t* time = m.time + 2 * b * m.n_time;
    for (int i = 0; i < m.n_time; ++i) {
      const int64_t start = std::clamp<int64_t>(time[2 * i], 0, frames);
      const int64_t end = std::clamp<int64_t>(time[2 * i + 1], start, frames);
      std::fill(out + start, out + end, value);
    }
  }
}

}  // namespace emohrnet_fast::spec_augment
