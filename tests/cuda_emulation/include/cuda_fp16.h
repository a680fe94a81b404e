#pragma once
// __half for the CUDA emulation: the CPU kernels' float16 storage type and its conversions.
#include "common/float16_cpu.h"

using __half = emohrnet_fast::Half;
inline float __half2float(__half h) { return emohrnet_fast::to_float(h); }
inline __half __float2half_rn(float x) { return emohrnet_fast::to_half(x); }
