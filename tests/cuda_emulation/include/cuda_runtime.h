#pragma once
// A host emulation of the part of CUDA that csrc/*/*_cuda.cu use, so machines without a GPU
// (CI included) run the CUDA back-ends' own code: see tests/cuda_emulation/README.md.
//
// A block's threads are fibers on the calling OS thread. A fiber runs until it reaches
// __syncthreads() or a warp shuffle; warp by warp, each runs (through its shuffles) up to the
// next barrier before the next warp starts, so the block advances barrier phase by barrier
// phase, and threads and warps can be scheduled in reverse order (EMOHRNET_EMU_ORDER=reverse):
// a missing barrier then changes the result. Launches are checked against the limits a GPU
// enforces (block and grid sizes, dynamic shared memory and its opt-in attribute). Fresh
// shared memory is filled with NaN bytes, so a read of an element nobody wrote poisons the
// output, and a write just outside it is an error. What this cannot show: anything about
// timing, warp-synchronous code without shuffles, or the device's floating point (no FMA
// contraction here; libm's transcendental functions).

#include <ucontext.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define CUDART_VERSION 13000

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct float2 {
  float x, y;
};

inline float2 make_float2(float x, float y) { return {x, y}; }

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
};

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

struct CUstream_st;
using cudaStream_t = CUstream_st*;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace emu {

// The limits of compute capability 9.0 (H100), which the kernels are built for.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockZ = 64;
constexpr unsigned kMaxGridX = 2147483647u;
constexpr unsigned kMaxGridYZ = 65535;
constexpr std::size_t kDefaultSharedBytes = 48 * 1024;
constexpr std::size_t kOptInSharedBytes = 227 * 1024;
constexpr std::size_t kFiberStackBytes = 256 * 1024;
// Around a block's dynamic shared memory, checked after the block: a write out of bounds.
constexpr std::size_t kSharedGuardBytes = 1024;
constexpr int kWarpSize = 32;

enum class State { kRunnable, kAtSyncthreads, kAtWarpSync, kDone };

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  uint3 thread;
  State state = State::kRunnable;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int current = -1;
  std::vector<unsigned char> shared;
  std::vector<std::uint64_t> warp_slots;
  const std::function<void()>* body = nullptr;
};

struct Runtime {
  cudaError_t last_error = cudaSuccess;
  std::map<const void*, std::size_t> shared_limit;  // per kernel, from cudaFuncSetAttribute
  Block block;
};

inline Runtime& runtime() {
  static thread_local Runtime rt;
  return rt;
}

inline Block& block() { return runtime().block; }

inline void fail(const std::string& what) {
  throw std::runtime_error("CUDA emulation: " + what);
}

inline void wait(State state) {
  Block& b = block();
  Fiber& f = b.fibers[b.current];
  f.state = state;
  swapcontext(&f.context, &b.scheduler);
}

inline void fiber_main() {
  Block& b = block();
  (*b.body)();
  b.fibers[b.current].state = State::kDone;
  // Returning resumes uc_link, the scheduler.
}

inline bool reverse_order() {
  const char* order = std::getenv("EMOHRNET_EMU_ORDER");
  return order != nullptr && std::strcmp(order, "reverse") == 0;
}

inline void resume(Block& b, int i) {
  b.current = i;
  threadIdx = b.fibers[i].thread;
  swapcontext(&b.scheduler, &b.fibers[i].context);
}

// Runs warp `base / 32` until none of its lanes can go on: each lane in turn up to its next
// __syncthreads() or shuffle; a shuffle every lane has reached is released and the warp goes
// on. So a warp runs ahead of the others up to the next barrier, as a GPU's independent warps
// may, and a shared-memory race between warps that only a shuffle seemed to order shows.
inline void run_warp(Block& b, int base, bool reverse) {
  const int end = std::min(base + kWarpSize, static_cast<int>(b.fibers.size()));
  for (;;) {
    for (int k = base; k < end; ++k) {
      const int i = reverse ? base + end - 1 - k : k;
      if (b.fibers[i].state == State::kRunnable) resume(b, i);
    }
    bool all_waiting = true;
    for (int i = base; i < end; ++i) all_waiting &= b.fibers[i].state == State::kAtWarpSync;
    if (!all_waiting) return;
    for (int i = base; i < end; ++i) b.fibers[i].state = State::kRunnable;
  }
}

inline void run_block(Block& b, bool reverse) {
  const int n = static_cast<int>(b.fibers.size());
  const int warps = (n + kWarpSize - 1) / kWarpSize;
  for (Fiber& f : b.fibers) {
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_main, 0);
    f.state = State::kRunnable;
  }
  for (;;) {
    for (int k = 0; k < warps; ++k) run_warp(b, (reverse ? warps - 1 - k : k) * kWarpSize, reverse);
    int done = 0, at_barrier = 0;
    for (const Fiber& f : b.fibers) {
      done += f.state == State::kDone;
      at_barrier += f.state == State::kAtSyncthreads;
    }
    if (done == n) return;
    if (at_barrier == n) {
      for (Fiber& f : b.fibers) f.state = State::kRunnable;
      continue;
    }
    fail("barrier divergence in block (" + std::to_string(blockIdx.x) + ", " +
         std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + "): " +
         std::to_string(at_barrier) + " of " + std::to_string(n) +
         " threads wait at __syncthreads(), " + std::to_string(done) +
         " have exited, the rest wait at a warp shuffle their warp does not complete");
  }
}

inline cudaError_t check_launch(const void* kernel, dim3 grid, dim3 threads, std::size_t shared) {
  const unsigned long long count =
      static_cast<unsigned long long>(threads.x) * threads.y * threads.z;
  if (count == 0 || count > kMaxThreadsPerBlock || threads.z > kMaxBlockZ) {
    return cudaErrorInvalidConfiguration;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridX || grid.y > kMaxGridYZ ||
      grid.z > kMaxGridYZ) {
    return cudaErrorInvalidConfiguration;
  }
  const auto limit = runtime().shared_limit.find(kernel);
  const std::size_t allowed =
      limit == runtime().shared_limit.end() ? kDefaultSharedBytes : limit->second;
  if (shared > allowed) return cudaErrorInvalidValue;
  return cudaSuccess;
}

inline void check_shared_guards(const Block& b, std::size_t shared) {
  std::size_t touched = 0;
  for (std::size_t i = 0; i < kSharedGuardBytes; ++i) {
    touched += b.shared[i] != 0xFF;
    touched += b.shared[kSharedGuardBytes + shared + i] != 0xFF;
  }
  if (touched > 0) {
    fail("block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
         std::to_string(blockIdx.z) + ") wrote " + std::to_string(touched) +
         " bytes outside its " + std::to_string(shared) + " bytes of dynamic shared memory");
  }
}

inline void run_grid(const void* kernel, dim3 grid, dim3 threads, std::size_t shared,
                     const std::function<void()>& body) {
  const cudaError_t err = check_launch(kernel, grid, threads, shared);
  if (err != cudaSuccess) {
    runtime().last_error = err;
    return;
  }
  Block& b = block();
  const unsigned count = threads.x * threads.y * threads.z;
  if (b.fibers.size() != count) {
    b.fibers = std::vector<Fiber>(count);
    for (Fiber& f : b.fibers) f.stack.resize(kFiberStackBytes);
  }
  for (unsigned i = 0; i < count; ++i) {
    b.fibers[i].thread = {i % threads.x, (i / threads.x) % threads.y, i / (threads.x * threads.y)};
  }
  b.warp_slots.assign(count, 0);
  b.body = &body;
  blockDim = threads;
  gridDim = grid;
  const bool reverse = reverse_order();
  const unsigned long long blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  for (unsigned long long k = 0; k < blocks; ++k) {
    const unsigned long long id = reverse ? blocks - 1 - k : k;
    blockIdx = {static_cast<unsigned>(id % grid.x), static_cast<unsigned>((id / grid.x) % grid.y),
                static_cast<unsigned>(id / (static_cast<unsigned long long>(grid.x) * grid.y))};
    b.shared.assign(shared + 2 * kSharedGuardBytes, 0xFF);  // all-ones bytes: NaN as a float
    run_block(b, reverse);
    check_shared_guards(b, shared);
  }
  b.body = nullptr;
}

template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(block().shared.data() + kSharedGuardBytes);
}

template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, threads;
  std::size_t shared;

  template <typename... A>
  void operator()(A&&... args) const {
    // Arguments are converted to the parameter types once, as the real launch copies them
    // into constant memory; every thread then receives its own copy.
    const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    const std::function<void()> body = [&] { std::apply(kernel, params); };
    run_grid(reinterpret_cast<const void*>(kernel), grid, threads, shared, body);
  }
};

// `kernel<<<grid, threads, shared, stream>>>(args)` is rewritten to
// `::emu::launch(kernel, grid, threads, shared, stream)(args)` (see build.py).
template <typename... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 threads, std::size_t shared = 0,
                    cudaStream_t = nullptr) {
  return {kernel, grid, threads, shared};
}

}  // namespace emu

inline void __syncthreads() { emu::wait(emu::State::kAtSyncthreads); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = emu::kWarpSize) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a wider type");
  if (mask != 0xffffffffu || width != emu::kWarpSize) {
    // An exception cannot unwind out of a fiber: stop loudly instead.
    std::fputs("CUDA emulation: only full-warp __shfl_xor_sync is emulated\n", stderr);
    std::abort();
  }
  emu::Block& b = emu::block();
  const int self = b.current;
  const int lane = self % emu::kWarpSize;
  std::memcpy(&b.warp_slots[self], &value, sizeof value);
  emu::wait(emu::State::kAtWarpSync);  // every lane has published its value
  const int source = self - lane + (lane ^ (lane_mask & (emu::kWarpSize - 1)));
  T result = value;
  if (source < static_cast<int>(b.fibers.size())) {
    std::memcpy(&result, &b.warp_slots[source], sizeof result);
  }
  emu::wait(emu::State::kAtWarpSync);  // every lane has read before any publishes again
  return result;
}

// One OS thread runs every emulated thread, so these are plain read-modify-writes.
inline unsigned atomicMax(unsigned* address, unsigned value) {
  const unsigned old = *address;
  if (value > old) *address = value;
  return old;
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

template <typename T>
T min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
T max(T a, T b) {
  return a < b ? b : a;
}

inline const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
  }
  return "unknown error";
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t err = emu::runtime().last_error;
  emu::runtime().last_error = cudaSuccess;
  return err;
}

// The emulation is not a device: code that asks for one sees none.
inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 0;
  return emu::runtime().last_error = cudaErrorNoDevice;
}

template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<std::size_t>(value) > emu::kOptInSharedBytes) {
    return emu::runtime().last_error = cudaErrorInvalidValue;
  }
  emu::runtime().shared_limit[reinterpret_cast<const void*>(kernel)] =
      static_cast<std::size_t>(value);
  return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}
