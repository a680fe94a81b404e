#pragma once
// Large fresh outputs: glibc hands each one out as new mmap'd pages, and on the CPU the first
// touch of every 4-KiB page (a fault) costs about as much as the op's own pass over the data.
// Where transparent huge pages are available on request (Linux THP "madvise", a common
// default), asking for them on the buffer's 2-MiB-aligned interior makes one fault per 2 MiB.
// A hint only: memory stays valid whatever the kernel decides, and elsewhere it does nothing.

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace emohrnet_fast {

inline void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace emohrnet_fast
