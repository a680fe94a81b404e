#pragma once
// __nv_bfloat16 for the CUDA emulation: the CPU kernels' bfloat16 storage type and its
// conversions.
#include "common/float16_cpu.h"

using __nv_bfloat16 = emohrnet_fast::BFloat16;
inline float __bfloat162float(__nv_bfloat16 b) { return emohrnet_fast::to_float(b); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return emohrnet_fast::to_bfloat16(x); }
