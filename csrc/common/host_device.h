#pragma once
// Lets one piece of math serve the CPU and the CUDA back-end: the CPU kernels are tested on
// every CI run, so sharing the code is what gives the (CI-untestable) CUDA kernels their
// correctness.
#if defined(__CUDACC__)
#define EF_HD __host__ __device__ __forceinline__
#else
#define EF_HD inline
#endif
