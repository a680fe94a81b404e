// The only translation unit that knows about Python. Functions take raw pointers as integers
// and plain sizes; emohrnet_fast/ops/*.py validates every tensor before calling in (see
// DESIGN.md: the compiled core does not link libtorch).

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "hr_fuse/hr_fuse.h"
#include "log_mel/log_mel.h"
#include "spec_augment/spec_augment.h"

#if defined(EMOHRNET_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
namespace lm = emohrnet_fast::log_mel;
namespace sa = emohrnet_fast::spec_augment;
namespace em = emohrnet_fast::masks;
namespace hf = emohrnet_fast::hr_fuse;

namespace {

template <typename T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

em::Masks make_masks(std::uintptr_t freq_masks, int n_freq_masks, std::uintptr_t time_masks,
                     int n_time_masks, std::uintptr_t mask_values) {
  em::Masks m;
  m.freq = ptr<const int32_t>(freq_masks);
  m.time = ptr<const int32_t>(time_masks);
  m.values = ptr<const float>(mask_values);
  m.n_freq = n_freq_masks;
  m.n_time = n_time_masks;
  return m;
}

// hr_fuse's variable-length tensor lists travel as fixed-size arrays plus a count; unused
// slots are 0. Strides are in elements, (n, c, h, w).
using Strides = std::array<int64_t, 4>;
using SamePtrs = std::array<std::uintptr_t, hf::kMaxSameRes>;
using SameStrides = std::array<Strides, hf::kMaxSameRes>;
using LowPtrs = std::array<std::uintptr_t, hf::kMaxLowRes>;
using LowStrides = std::array<Strides, hf::kMaxLowRes>;
using LowSizes = std::array<std::array<int64_t, 2>, hf::kMaxLowRes>;

hf::View make_view(std::uintptr_t data, const Strides& s) {
  hf::View v;
  v.data = ptr<void>(data);
  v.stride_n = s[0];
  v.stride_c = s[1];
  v.stride_h = s[2];
  v.stride_w = s[3];
  return v;
}

hf::Params make_hr_fuse_params(int64_t batch, int64_t channels, int64_t height, int64_t width,
                               int num_same, int num_low, const LowSizes& low_sizes, int dtype,
                               int num_threads) {
  hf::Params p;
  p.batch = batch;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.num_same = num_same;
  p.num_low = num_low;
  if (num_low < 0 || num_low > hf::kMaxLowRes) {
    throw std::invalid_argument("hr_fuse: expected 0-3 low-res inputs");
  }
  for (int k = 0; k < num_low; ++k) {
    p.rows[k] = hf::make_nearest_map(low_sizes[k][0], height);
    p.cols[k] = hf::make_nearest_map(low_sizes[k][1], width);
  }
  if (dtype < 0 || dtype > static_cast<int>(hf::DType::kFloat64)) {
    throw std::invalid_argument("hr_fuse: unknown dtype code " + std::to_string(dtype));
  }
  p.dtype = static_cast<hf::DType>(dtype);
  p.num_threads = num_threads;
  hf::check_params(p);
  return p;
}

struct LogMelCall {
  lm::Params params;
  lm::Buffers buffers;
};

LogMelCall make_log_mel_call(std::uintptr_t waveform, std::uintptr_t window,
                             std::uintptr_t twiddles, std::uintptr_t fb_weights,
                             std::uintptr_t fb_offsets, std::uintptr_t fb_first_bin,
                             std::uintptr_t dct, std::uintptr_t out, std::uintptr_t bands_scratch,
                             std::uintptr_t example_max, int64_t batch, int64_t length,
                             int n_fft, int hop_length, int n_bands, int n_mfcc, bool use_mel,
                             int power, int output, float log_eps, float db_amin,
                             float db_multiplier, bool clamp_top_db, float top_db,
                             int num_threads, const em::Masks& masks) {
  LogMelCall call;
  lm::Params& p = call.params;
  p.batch = batch;
  p.length = length;
  p.frames = 1 + length / hop_length;
  p.n_fft = n_fft;
  p.hop_length = hop_length;
  p.n_bands = n_bands;
  p.n_mfcc = n_mfcc;
  p.use_mel = use_mel;
  p.power = power;
  p.output = static_cast<lm::Output>(output);
  p.log_eps = log_eps;
  p.db_amin = db_amin;
  p.db_multiplier = db_multiplier;
  p.clamp_top_db = clamp_top_db;
  p.top_db = top_db;
  p.num_threads = num_threads;
  lm::Buffers& b = call.buffers;
  b.waveform = ptr<const float>(waveform);
  b.window = ptr<const float>(window);
  b.twiddles = ptr<const float>(twiddles);
  b.fb_weights = ptr<const float>(fb_weights);
  b.fb_offsets = ptr<const int32_t>(fb_offsets);
  b.fb_first_bin = ptr<const int32_t>(fb_first_bin);
  b.dct = ptr<const float>(dct);
  b.out = ptr<float>(out);
  b.bands_scratch = ptr<float>(bands_scratch);
  b.example_max = ptr<float>(example_max);
  b.masks = masks;
  return call;
}

int cuda_device_count() {
#if defined(EMOHRNET_WITH_CUDA)
  int count = 0;
  // Without a driver this returns an error, which means "no usable device", not a crash.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "emohrnet_fast compiled core: CPU (and, when built with nvcc, CUDA) kernels.";

  m.def("has_cuda", []() {
#if defined(EMOHRNET_WITH_CUDA)
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled into this build.");
  m.def("cuda_device_count", &cuda_device_count,
        "CUDA devices usable by this build (0 without CUDA kernels or without a driver).");
  m.def("build_info", []() {
    py::dict info;
#if defined(EMOHRNET_WITH_CUDA)
    info["cuda"] = true;
    info["cuda_architectures"] = std::string(EMOHRNET_CUDA_ARCHITECTURES);
    info["cuda_toolkit"] = std::to_string(CUDART_VERSION / 1000) + "." +
                           std::to_string((CUDART_VERSION % 1000) / 10);
#else
    info["cuda"] = false;
#endif
#if defined(_OPENMP)
    info["openmp"] = _OPENMP;
#endif
    info["compiler"] = std::string(__VERSION__);
    return info;
  }, "What this build of the compiled core contains.");

  m.def(
      "log_mel",
      [](std::uintptr_t waveform, std::uintptr_t window, std::uintptr_t twiddles,
         std::uintptr_t fb_weights, std::uintptr_t fb_offsets, std::uintptr_t fb_first_bin,
         std::uintptr_t dct, std::uintptr_t out, std::uintptr_t bands_scratch,
         std::uintptr_t example_max, int64_t batch, int64_t length, int n_fft, int hop_length,
         int n_bands, int n_mfcc, bool use_mel, int power, int output, float log_eps,
         float db_amin, float db_multiplier, bool clamp_top_db, float top_db, int num_threads,
         std::uintptr_t freq_masks, int n_freq_masks, std::uintptr_t time_masks,
         int n_time_masks, std::uintptr_t mask_values, bool cuda, std::uintptr_t stream) {
        const LogMelCall call = make_log_mel_call(
            waveform, window, twiddles, fb_weights, fb_offsets, fb_first_bin, dct, out,
            bands_scratch, example_max, batch, length, n_fft, hop_length, n_bands, n_mfcc,
            use_mel, power, output, log_eps, db_amin, db_multiplier, clamp_top_db, top_db,
            num_threads,
            make_masks(freq_masks, n_freq_masks, time_masks, n_time_masks, mask_values));
        if (!cuda) {
          py::gil_scoped_release release;
          lm::log_mel_cpu(call.params, call.buffers);
          return;
        }
#if defined(EMOHRNET_WITH_CUDA)
        lm::log_mel_cuda(call.params, call.buffers, stream);
#else
        (void)stream;
        throw std::runtime_error("emohrnet_fast was built without CUDA kernels");
#endif
      },
      py::kw_only(), py::arg("waveform"), py::arg("window"), py::arg("twiddles"),
      py::arg("fb_weights"), py::arg("fb_offsets"), py::arg("fb_first_bin"), py::arg("dct"),
      py::arg("out"), py::arg("bands_scratch"), py::arg("example_max"), py::arg("batch"),
      py::arg("length"), py::arg("n_fft"), py::arg("hop_length"), py::arg("n_bands"),
      py::arg("n_mfcc"), py::arg("use_mel"), py::arg("power"), py::arg("output"),
      py::arg("log_eps"), py::arg("db_amin"), py::arg("db_multiplier"), py::arg("clamp_top_db"),
      py::arg("top_db"), py::arg("num_threads"), py::arg("freq_masks"), py::arg("n_freq_masks"),
      py::arg("time_masks"), py::arg("n_time_masks"), py::arg("mask_values"), py::arg("cuda"),
      py::arg("stream"),
      "Fused log-Mel front-end (see emohrnet_fast.ops.log_mel). `cuda` selects the back-end; "
      "`stream` is the cudaStream_t, as an integer, that CUDA work is queued on. "
      "`mask_values` = 0 means no SpecAugment masks.");

  m.def(
      "spec_augment",
      [](std::uintptr_t in, std::uintptr_t out, int64_t batch, int64_t rows_per_example,
         int64_t features, int64_t frames, std::uintptr_t freq_masks, int n_freq_masks,
         std::uintptr_t time_masks, int n_time_masks, std::uintptr_t mask_values, int num_threads,
         bool cuda, std::uintptr_t stream) {
        sa::Params p;
        p.batch = batch;
        p.rows_per_example = rows_per_example;
        p.features = features;
        p.frames = frames;
        p.num_threads = num_threads;
        sa::Buffers b;
        b.in = ptr<const float>(in);
        b.out = ptr<float>(out);
        b.masks = make_masks(freq_masks, n_freq_masks, time_masks, n_time_masks, mask_values);
        if (!cuda) {
          py::gil_scoped_release release;
          sa::spec_augment_cpu(p, b);
          return;
        }
#if defined(EMOHRNET_WITH_CUDA)
        sa::spec_augment_cuda(p, b, stream);
#else
        (void)stream;
        throw std::runtime_error("emohrnet_fast was built without CUDA kernels");
#endif
      },
      py::kw_only(), py::arg("input"), py::arg("out"), py::arg("batch"),
      py::arg("rows_per_example"), py::arg("features"), py::arg("frames"), py::arg("freq_masks"),
      py::arg("n_freq_masks"), py::arg("time_masks"), py::arg("n_time_masks"),
      py::arg("mask_values"), py::arg("num_threads"), py::arg("cuda"), py::arg("stream"),
      "SpecAugment masks in one pass over (B, rows, frames) float32; `out` may equal `input`.");

  m.def(
      "hr_fuse",
      [](const SamePtrs& same, const SameStrides& same_strides, int num_same, const LowPtrs& low,
         const LowStrides& low_strides, const LowSizes& low_sizes, int num_low,
         std::uintptr_t out, const Strides& out_strides, int64_t batch, int64_t channels,
         int64_t height, int64_t width, int dtype, int num_threads, bool cuda,
         std::uintptr_t stream) {
        const hf::Params p = make_hr_fuse_params(batch, channels, height, width, num_same,
                                                 num_low, low_sizes, dtype, num_threads);
        hf::ForwardBuffers buf;
        for (int j = 0; j < num_same; ++j) buf.same[j] = make_view(same[j], same_strides[j]);
        for (int k = 0; k < num_low; ++k) buf.low[k] = make_view(low[k], low_strides[k]);
        buf.out = make_view(out, out_strides);
        if (!cuda) {
          py::gil_scoped_release release;
          hf::hr_fuse_cpu(p, buf);
          return;
        }
#if defined(EMOHRNET_WITH_CUDA)
        hf::hr_fuse_cuda(p, buf, stream);
#else
        (void)stream;
        throw std::runtime_error("emohrnet_fast was built without CUDA kernels");
#endif
      },
      py::kw_only(), py::arg("same"), py::arg("same_strides"), py::arg("num_same"),
      py::arg("low"), py::arg("low_strides"), py::arg("low_sizes"), py::arg("num_low"),
      py::arg("out"), py::arg("out_strides"), py::arg("batch"), py::arg("channels"),
      py::arg("height"), py::arg("width"), py::arg("dtype"), py::arg("num_threads"),
      py::arg("cuda"), py::arg("stream"),
      "HRNet fuse, out = relu(sum(same) + sum(nearest_upsample(low))) (see "
      "emohrnet_fast.ops.hr_fuse). Pointers as integers, element strides (n, c, h, w), "
      "low_sizes (h, w) per low-res input; `stream` is the cudaStream_t as an integer.");

  m.def(
      "hr_fuse_backward",
      [](std::uintptr_t grad, const Strides& grad_strides, std::uintptr_t out,
         const Strides& out_strides, std::uintptr_t grad_same, const Strides& grad_same_strides,
         const LowPtrs& grad_low, const LowStrides& grad_low_strides, const LowSizes& low_sizes,
         const LowPtrs& row_start, const LowPtrs& col_start, int num_low, int64_t batch,
         int64_t channels, int64_t height, int64_t width, int dtype, int num_threads, bool cuda,
         std::uintptr_t stream) {
        // The same-res count does not matter here: they all receive the same gradient.
        const hf::Params p = make_hr_fuse_params(batch, channels, height, width, 1, num_low,
                                                 low_sizes, dtype, num_threads);
        hf::BackwardBuffers buf;
        buf.grad = make_view(grad, grad_strides);
        buf.out = make_view(out, out_strides);
        buf.grad_same = make_view(grad_same, grad_same_strides);
        for (int k = 0; k < num_low; ++k) {
          buf.grad_low[k] = make_view(grad_low[k], grad_low_strides[k]);
          buf.row_start[k] = ptr<const int64_t>(row_start[k]);
          buf.col_start[k] = ptr<const int64_t>(col_start[k]);
        }
        if (!cuda) {
          py::gil_scoped_release release;
          hf::hr_fuse_backward_cpu(p, buf);
          return;
        }
#if defined(EMOHRNET_WITH_CUDA)
        hf::hr_fuse_backward_cuda(p, buf, stream);
#else
        (void)stream;
        throw std::runtime_error("emohrnet_fast was built without CUDA kernels");
#endif
      },
      py::kw_only(), py::arg("grad"), py::arg("grad_strides"), py::arg("out"),
      py::arg("out_strides"), py::arg("grad_same"), py::arg("grad_same_strides"),
      py::arg("grad_low"), py::arg("grad_low_strides"), py::arg("low_sizes"),
      py::arg("row_start"), py::arg("col_start"), py::arg("num_low"), py::arg("batch"),
      py::arg("channels"), py::arg("height"), py::arg("width"), py::arg("dtype"),
      py::arg("num_threads"), py::arg("cuda"), py::arg("stream"),
      "Backward of hr_fuse: grad_same = grad * (out > 0) (NaN outputs pass the gradient, as "
      "torch.threshold_backward), grad_low[k] = its sum over each low-res pixel's block "
      "[row_start[k][s], row_start[k][s+1]) x [col_start[k][t], col_start[k][t+1]).");
}
