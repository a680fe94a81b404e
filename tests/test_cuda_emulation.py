"""The CUDA back-ends' own code (csrc/*/*_cuda.cu) run on the CPU by the emulation in
tests/cuda_emulation/, against the CPU kernels, on the cases tests/gpu/kernel_cases.py runs
on a GPU. Every case also runs with threads, warps and blocks scheduled in reverse, which must
give the same bits: a missing __syncthreads() would make the order matter. Builds with small
grid caps run the grid-stride loops, and deliberately broken builds check that the emulation
catches what it claims to (tests/cuda_emulation/README.md). This is what CI can say about the
CUDA code without a GPU; the device run (tests/gpu/run_device.sh) still decides."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_emulation.build import CUDA_SOURCES, build
from gpu import kernel_cases as cases

from emohrnet_fast.ops import log_mel, spec_augment, spec_augment_

SANITIZE = os.environ.get("EMOHRNET_EMU_SANITIZE") == "1"  # set by tests/sanitize_cpu.sh
# Under ASan the question is memory safety, which one order answers as well as two.
ORDERS = ("forward",) if SANITIZE else ("forward", "reverse")
checks_the_emulation = pytest.mark.skipif(
    SANITIZE, reason="a test of the emulation itself: the unsanitized run has it"
)
# By name: emohrnet_fast.ops re-exports functions under its modules' names.
LAUNCHING_OPS = tuple(
    importlib.import_module(f"emohrnet_fast.ops.{name}")
    for name in ("log_mel", "spec_augment", "hr_fuse")
)


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _CudaPath:
    """The compiled core's functions with the CUDA back-end selected (stream 0)."""

    def __init__(self, core) -> None:
        self._core = core

    def __getattr__(self, name: str):
        function = getattr(self._core, name)
        return lambda **kwargs: function(**{**kwargs, "cuda": True, "stream": 0})


def emulated_target(core, monkeypatch: pytest.MonkeyPatch, order: str) -> cases.Target:
    @contextlib.contextmanager
    def active():
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        with monkeypatch.context() as patch:
            patch.setenv("EMOHRNET_EMU_ORDER", order)
            for module in LAUNCHING_OPS:
                patch.setattr(module, "_C", _CudaPath(core))
            # torch.empty & co. then fill with NaN: an output element a kernel never writes
            # shows, whatever the allocator hands back.
            patch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                yield
            finally:
                torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    return cases.Target(move=lambda t: t, active=active)


@pytest.fixture(scope="module")
def emulated_core():
    try:
        path = build(sanitize=SANITIZE)
    except RuntimeError as err:  # no pybind11 headers
        pytest.skip(str(err))
    return load_module(path, "cuda_emulation._C")


@pytest.fixture(params=ORDERS)
def order(request) -> str:
    return request.param


@pytest.fixture
def target(emulated_core, monkeypatch, order) -> cases.Target:
    return emulated_target(emulated_core, monkeypatch, order)


def in_each_order(core, monkeypatch: pytest.MonkeyPatch, fn) -> list:
    """``fn(target)`` on the emulated ``core``, once in each order of ORDERS."""
    return [fn(emulated_target(core, monkeypatch, order)) for order in ORDERS]


def log_mel_on(target: cases.Target, x: torch.Tensor, config, masks=None) -> torch.Tensor:
    with target.active():
        return log_mel(target.move(x), config, augment=masks)


@pytest.fixture
def each_order(emulated_core, monkeypatch):
    """Runs a function of the target in each order of ORDERS; asserts equal bits; returns one."""

    def run(fn):
        first, *others = in_each_order(emulated_core, monkeypatch, fn)
        for other in others:
            for a, b in zip(first, other, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        return first

    return run


def test_the_emulated_core_is_the_cuda_build(emulated_core):
    assert emulated_core.has_cuda()
    assert emulated_core.build_info()["cuda_architectures"] == "emulated"
    assert emulated_core.cuda_device_count() == 0  # an emulation is no device


LENGTHS = [1, 2, 255, 257, 511, 4001]


@pytest.mark.parametrize(
    "config", cases.CONFIGS, ids=[f"config{i}" for i in range(len(cases.CONFIGS))]
)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("batch", cases.BATCHES)
def test_log_mel(each_order, config, length, batch):
    if config.n_fft == 2 and length > 1000:
        length = 1000  # 1 frame per sample: the emulation's thread switches dominate
    x = torch.randn(batch, length)
    (got,) = each_order(lambda t: [log_mel_on(t, x, config)])
    assert cases.log_mel_mismatch(got, log_mel(x, config), config) is None


@pytest.mark.parametrize("shape", cases.MASK_SHAPES)
def test_spec_augment(each_order, shape):
    spec = torch.randn(shape)
    masks = cases.case_augment().draw(shape[0], shape[-2], shape[-1])

    def on(target):
        with target.active():
            return [spec_augment(spec, masks), spec_augment_(spec.clone(), masks)]

    expected = spec_augment(spec, masks)
    for got in each_order(on):
        assert torch.equal(got, expected)


@pytest.mark.parametrize("config", cases.CONFIGS[:4], ids=[f"config{i}" for i in range(4)])
def test_log_mel_with_fused_masks(each_order, config):
    length = 4001
    x = torch.randn(3, length)
    masks = cases.case_augment().draw(3, config.n_features, config.num_frames(length))
    (got,) = each_order(lambda t: [log_mel_on(t, x, config, masks)])
    assert cases.log_mel_mismatch(got, log_mel(x, config, augment=masks), config) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", cases.HR_FUSE_CASES, ids=lambda c: f"branch{c[0]}of{c[1]}_{c[2]}")
def test_hr_fuse_forward_and_backward(each_order, dtype, case):
    branch, n_branches, layout = case
    inputs, n_same = cases.hr_fuse_inputs(branch, n_branches, dtype, batch=2, channels=3)
    grad = torch.randn_like(inputs[0])
    expected = cases.hr_fuse_on(inputs, n_same, grad, None)
    got = each_order(lambda t: cases.hr_fuse_on(inputs, n_same, grad, t, layout))
    assert cases.hr_fuse_mismatch(got, expected, n_branches) is None


def test_the_gpu_script_passes_on_the_emulation(target, capsys):
    """tests/gpu/kernel_cases.py's own run, every case at its full lengths, on the emulation."""
    assert cases.check_edge_cases(target) == 0, capsys.readouterr().out


# Rewrites of the CUDA sources for the tests below: {file: {text: replacement}}, each text
# found exactly once in its file.
# Grid caps of 2-3 blocks, so every grid-stride loop (over the batch, rows, frames, elements)
# takes several turns on small inputs: a GPU only does that beyond 65535 examples or rows. And
# hr_fuse's 64-bit index path, which a GPU takes beyond 2^31 elements (SMALL_GRIDS_32 keeps
# its 32-bit paths, the dense ones among them).
SMALL_GRIDS = {
    "log_mel/log_mel_cuda.cu": {
        "kMaxGridY = 65535;": "kMaxGridY = 2;",
        "/ kThreads, 4096)": "/ kThreads, 2)",
    },
    "spec_augment/spec_augment_cuda.cu": {
        "kMaxBlocks = 65535;": "kMaxBlocks = 2;",
        # work items of 128 frames: rows longer than one item (a GPU's beyond 1024 frames)
        "kChunk = 1024;": "kChunk = 128;",
    },
    "hr_fuse/hr_fuse_cuda.cu": {
        "kMaxBlocks = 65535;": "kMaxBlocks = 3;",
        "narrow = total <= std::numeric_limits<int32_t>::max();": "narrow = false;",
    },
}
SMALL_GRIDS_32 = {"hr_fuse/hr_fuse_cuda.cu": {"kMaxBlocks = 65535;": "kMaxBlocks = 3;"}}
# Deliberate bugs, each of which the emulation must catch: otherwise the tests above could
# pass on code that is wrong on a GPU.
LOAD_BARRIER = "    }\n    __syncthreads();\n\n    if constexpr (kM > 0) {"
REUSE_BARRIER = "    __syncthreads();  // the next example reuses shared memory"
LOG_MEL = "log_mel/log_mel_cuda.cu"
MISSING_BARRIER = {LOG_MEL: {LOAD_BARRIER: LOAD_BARRIER.replace("__syncthreads();", "")}}
SHARED_TOO_SMALL = {
    LOG_MEL: {
        "smem = static_cast<std::size_t>(fpb) * bytes_per_frame;": (
            "smem = static_cast<std::size_t>(fpb) * bytes_per_frame - 8;"
        )
    }
}
UNWRITTEN_FRAME = {
    "spec_augment/spec_augment_cuda.cu": {
        "? t_begin + kChunk : p.frames;": "? t_begin + kChunk : p.frames - 1;"
    }
}
DIVERGENT_BARRIER = {
    LOG_MEL: {REUSE_BARRIER: REUSE_BARRIER.replace("__", "if (threadIdx.x) __", 1)}
}
MISSING_REUSE_BARRIER = {**SMALL_GRIDS, LOG_MEL: {**SMALL_GRIDS[LOG_MEL], REUSE_BARRIER: ""}}
# hr_fuse's dense kernels made wrong (no ReLU in the forward, negated low-res gradients), so
# the inputs that reach them show which ones do.
DENSE_KERNELS_BROKEN = {
    "hr_fuse/hr_fuse_cuda.cu": {"+ i, relu(value));": "+ i, value);", "+ j, sum);": "+ j, -sum);"}
}


def edited_core(label: str, rewrites: dict[str, dict[str, str]], tmp_path_factory):
    assert set(rewrites) <= set(CUDA_SOURCES), set(rewrites) - set(CUDA_SOURCES)

    def edit(name: str, source: str) -> str:
        for old, new in rewrites.get(name, {}).items():
            assert source.count(old) == 1, f"csrc/{name} changed: update the test's {old!r}"
            source = source.replace(old, new)
        return source

    path = build(sanitize=SANITIZE, out_dir=tmp_path_factory.mktemp(label), edit=edit)
    return load_module(path, f"cuda_emulation_{label}._C")


@pytest.fixture(scope="module")
def small_grid_core(emulated_core, tmp_path_factory):
    return edited_core("small_grids", SMALL_GRIDS, tmp_path_factory)


@pytest.fixture
def small_grid_orders(small_grid_core, monkeypatch):
    return lambda fn: in_each_order(small_grid_core, monkeypatch, fn)


@pytest.mark.parametrize(
    "config", cases.CONFIGS, ids=[f"config{i}" for i in range(len(cases.CONFIGS))]
)
def test_small_grids_log_mel(small_grid_orders, config):
    x = torch.randn(5, 1000)
    masks = cases.case_augment().draw(5, config.n_features, config.num_frames(1000))
    expected = log_mel(x, config, augment=masks)
    for got in small_grid_orders(lambda t: log_mel_on(t, x, config, masks)):
        assert cases.log_mel_mismatch(got, expected, config) is None


def test_small_grids_spec_augment(small_grid_orders):
    spec = torch.randn(3, 2, 5, 700)
    masks = cases.case_augment().draw(3, 5, 700)
    expected = spec_augment(spec, masks)

    def on(target):
        with target.active():
            return spec_augment(spec, masks)

    for got in small_grid_orders(on):
        assert torch.equal(got, expected)


@pytest.fixture(scope="module")
def small_grid_32_core(emulated_core, tmp_path_factory):
    return edited_core("small_grids_32", SMALL_GRIDS_32, tmp_path_factory)


@pytest.mark.parametrize("index", ["64-bit", "32-bit"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "case",
    [c for c in cases.HR_FUSE_CASES if c[:2] in ((0, 4), (1, 4), (0, 3))],
    ids=lambda c: f"branch{c[0]}of{c[1]}_{c[2]}",
)
def test_small_grids_hr_fuse(request, monkeypatch, index, case, dtype):
    core = request.getfixturevalue("small_grid_core" if index == "64-bit" else "small_grid_32_core")
    branch, n_branches, layout = case
    inputs, n_same = cases.hr_fuse_inputs(branch, n_branches, dtype, batch=2, channels=3)
    grad = torch.randn_like(inputs[0])
    expected = cases.hr_fuse_on(inputs, n_same, grad, None)
    for got in in_each_order(
        core, monkeypatch, lambda t: cases.hr_fuse_on(inputs, n_same, grad, t, layout)
    ):
        assert cases.hr_fuse_mismatch(got, expected, n_branches) is None


# Without the barrier that ends an example, a warp running ahead loads the next example's
# samples over the power spectrum other warps still read; it shares their buffer when the FFT
# has an odd number of stages (config 7: n_fft 96, 48 = 4 * 4 * 3).
@checks_the_emulation
@pytest.mark.parametrize(
    ("bug", "rewrites", "config"),
    [
        ("missing_barrier", MISSING_BARRIER, cases.CONFIGS[0]),
        ("missing_reuse_barrier", MISSING_REUSE_BARRIER, cases.CONFIGS[7]),
    ],
)
def test_a_missing_barrier_changes_the_features(
    bug, rewrites, config, tmp_path_factory, monkeypatch
):
    core = edited_core(bug, rewrites, tmp_path_factory)
    x = torch.randn(5, 1000)
    results = in_each_order(core, monkeypatch, lambda t: log_mel_on(t, x, config))
    expected = log_mel(x, config)
    caught = [cases.log_mel_mismatch(got, expected, config) is not None for got in results]
    assert all(caught) or not torch.equal(*results)


@checks_the_emulation
def test_an_output_element_never_written_shows(tmp_path_factory, monkeypatch):
    core = edited_core("unwritten_frame", UNWRITTEN_FRAME, tmp_path_factory)
    spec = torch.randn(2, 3, 10)
    masks = cases.case_augment().draw(2, 3, 10)
    with emulated_target(core, monkeypatch, "forward").active():
        got = spec_augment(spec, masks)
    assert got[..., :-1].equal(spec_augment(spec, masks)[..., :-1])
    assert got[..., -1].isnan().all()


@checks_the_emulation
def test_a_write_past_the_shared_memory_is_an_error(tmp_path_factory, monkeypatch):
    core = edited_core("shared_too_small", SHARED_TOO_SMALL, tmp_path_factory)
    target = emulated_target(core, monkeypatch, "forward")
    with pytest.raises(RuntimeError, match=r"wrote \d+ bytes outside its \d+ bytes of dynamic"):
        log_mel_on(target, torch.randn(1, 4001), cases.CONFIGS[0])


@checks_the_emulation
def test_a_divergent_barrier_is_an_error(tmp_path_factory, monkeypatch):
    core = edited_core("divergent_barrier", DIVERGENT_BARRIER, tmp_path_factory)
    target = emulated_target(core, monkeypatch, "forward")
    with pytest.raises(RuntimeError, match="barrier divergence"):
        log_mel_on(target, torch.randn(1, 4001), cases.CONFIGS[0])


def test_the_build_command_prints_the_module(emulated_core):
    script = Path(__file__).resolve().parent / "cuda_emulation" / "build.py"
    flags = ["--sanitize"] if SANITIZE else []
    done = subprocess.run(
        [sys.executable, str(script), *flags], capture_output=True, text=True, check=True
    )
    assert Path(done.stdout.strip()) == Path(emulated_core.__file__)


@pytest.fixture(scope="module")
def dense_broken_core(emulated_core, tmp_path_factory):
    return edited_core("dense_broken", DENSE_KERNELS_BROKEN, tmp_path_factory)


# The dense kernels must serve what models pass (every tensor contiguous or channels_last) and
# nothing else: the strided ones address each tensor through its own strides.
@checks_the_emulation
@pytest.mark.parametrize(
    ("layout", "dense_forward", "dense_backward"),
    [
        ("contiguous", True, True),
        ("channels_last", True, True),
        ("mixed", False, False),  # channels_last output, contiguous incoming gradient
        ("sliced", False, True),  # strided inputs, but a dense output and gradients
    ],
)
def test_dense_inputs_take_the_dense_kernels(
    dense_broken_core, monkeypatch, layout, dense_forward, dense_backward
):
    inputs, n_same = cases.hr_fuse_inputs(0, 3, torch.float32, batch=2, channels=3)
    grad = torch.randn_like(inputs[0])
    expected = cases.hr_fuse_on(inputs, n_same, grad, None)
    target = emulated_target(dense_broken_core, monkeypatch, "forward")
    got = cases.hr_fuse_on(inputs, n_same, grad, target, layout)

    def right(got: torch.Tensor, expected: torch.Tensor) -> bool:
        return torch.allclose(got, expected, rtol=0, atol=1e-5)  # the two sum in other orders

    assert right(got[0], expected[0]) != dense_forward
    low_grads = zip(got[1 + n_same :], expected[1 + n_same :], strict=True)
    assert [right(g, e) for g, e in low_grads] == [not dense_backward] * (len(got) - 1 - n_same)
