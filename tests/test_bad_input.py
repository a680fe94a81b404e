"""Bad-input matrix: every public entry point against the kinds of bad input that apply to it.

Entry points: ``ops.log_mel`` (and ``ops.reference.log_mel``), ``ops.spec_augment`` /
``ops.spec_augment_`` (and ``ops.reference.spec_augment``), ``ops.hr_fuse`` (and
``ops.reference.hr_fuse``), the ``features`` modules (``LogMel``, ``Spectrogram``, ``MFCC``,
``FrontEnd``), ``FrontEndConfig``, ``augment.SpecAugment`` (constructor, ``draw``, forward),
``models.create`` and the forward of ``emohrnet_small`` and ``centerloss_cnn_spec``,
``losses.CenterLoss``, ``data.load_corpus`` and ``data.splits``, ``audio.load`` and
``audio.resample``, ``Report.from_predictions`` and the CLI (``emohrnet_fast.cli.main``).

Input kinds: wrong dtype (integer, complex, bool, a float the op does not take), wrong device
(``meta`` stands in for a device the tensors do not live on), wrong rank, wrong shape, empty
tensors, NaN / Inf, non-contiguous (transposed, strided, expanded) inputs, huge values (1e30),
wrong types and out-of-range numbers for settings (sample rates of 0, negative or float), files
that are missing, a folder, random bytes, a text file, a truncated WAV or zero bytes long, and
unknown corpus / model / protocol / command names.

Every table below is one entry point; each row is one input kind, a ``pytest.param(call,
expect, id=...)``. ``expect`` is either :class:`Raises` (the exception type, a regex its
message must match, and optionally attributes of the exception) or a function that asserts the
documented behaviour of an accepted input:

* NaN passes through the kernels by design: rows assert where it goes (the frames, features or
  elements it touches), not merely that nothing crashed. An Inf sample makes its frames NaN.
* Non-contiguous, transposed and expanded inputs give what their contiguous copy gives.
* Huge values either stay finite or overflow to ``+inf`` as float32 arithmetic does, and never
  crash; the kernels never turn them into NaN (the float32 reference's dense filterbank product
  does, as documented, where the power overflows).

Cases that other test files already cover verbatim (test_log_mel_bad_input.py,
test_spec_augment.py, test_hr_fuse.py, test_audio.py, test_corpora.py, test_splits.py,
test_evaluate.py, test_cli.py, the model tests) are not repeated here; rows use other values
of the same kinds, or the entry points those files do not reach (the references, the modules).
To extend the matrix, add a row to the table of the entry point. Everything runs on the CPU
with small shapes.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import corpus_fixtures as fx
import numpy as np
import pytest
import soundfile
import torch

import emohrnet_fast as ef
from emohrnet_fast import audio, models, ops
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.cli import main as cli_main
from emohrnet_fast.data import CorpusLayoutError, load_corpus, splits
from emohrnet_fast.evaluate import Report
from emohrnet_fast.features import MFCC, FrontEnd, LogMel, Spectrogram
from emohrnet_fast.losses import CenterLoss
from emohrnet_fast.ops import MaskParams, reference
from emohrnet_fast.ops.mel import FrontEndTables, build_tables

NAN, INF = float("nan"), float("inf")
HUGE = 1e30

# --- the matrix machinery ------------------------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """The row must raise ``error`` with a message matching ``match`` (``re.search``); every
    item of ``attrs`` must equal that attribute of the exception."""

    error: type[BaseException]
    match: str
    attrs: dict = field(default_factory=dict)


def raises(error: type[BaseException], match: str, **attrs) -> Raises:
    return Raises(error, match, attrs)


def row(id: str, call: Callable, expect: Raises | Callable, *marks) -> pytest.param:
    return pytest.param(call, expect, id=id, marks=marks)


def run_row(call: Callable, expect: Raises | Callable, *args) -> None:
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match) as info:
            call(*args)
        for name, value in expect.attrs.items():
            assert getattr(info.value, name) == value, (name, getattr(info.value, name))
    else:
        result = call(*args)
        verdict = expect(result)  # a check asserts, or returns whether it holds
        assert verdict is None or bool(verdict), f"{expect.__doc__ or 'check'}: {result!r}"


def identical(pair: tuple) -> None:
    """Both results are equal, bit for bit (NaN where the other has NaN)."""
    got, expected = pair
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


def close(pair: tuple) -> None:
    """Equal up to float32 rounding: convolutions may pick another algorithm for another
    memory layout."""
    got, expected = pair
    torch.testing.assert_close(got, expected)


def as_contiguous(fn: Callable, x: torch.Tensor) -> tuple:
    """``(fn(x), fn(contiguous copy of x))``, after checking ``x`` is not contiguous."""
    assert not x.is_contiguous()
    return fn(x), fn(x.contiguous())


# --- ops.log_mel and ops.reference.log_mel -------------------------------------------------

# 16 Mel bands of a 64-point FFT with a 16-sample hop: 400 samples give 26 frames.
CFG = ef.FrontEndConfig(n_fft=64, hop_length=16, n_mels=16, top_db=None)
CFG_DB = CFG.replace(top_db=80.0)
LINEAR_DB = CFG_DB.replace(n_mels=None)  # 33 linear bins
# A bad sample at 200 is inside the (centred, 64-sample) windows of frames 11-14 only.
TOUCHED = [11, 12, 13, 14]
UNTOUCHED = [t for t in range(26) if t not in TOUCHED]


def _with_sample(value: float, length: int = 400) -> torch.Tensor:
    x = torch.randn(length)
    x[200] = value
    return x


def nan_in_touched_frames_only(bins: int = 16) -> Callable:
    def check(out: torch.Tensor) -> None:
        assert out.shape == (bins, 26)
        assert out[:, TOUCHED].isnan().all(), "every band of a touched frame"
        assert out[:, UNTOUCHED].isfinite().all(), "frames the bad sample does not reach"

    check.__doc__ = "NaN exactly in the frames whose window holds the bad sample"
    return check


def all_positive_inf(out: torch.Tensor) -> None:
    assert torch.isposinf(out).all(), out


def positive_inf_or_nan(out: torch.Tensor) -> None:
    # Whether torch.stft turns an inf sample into NaN in some bins of the frames it reaches
    # depends on the machine (an Intel Xeon gave NaN in 120 of 858): none may stay finite.
    assert not out.isfinite().any(), out
    assert torch.isposinf(out[~out.isnan()]).all(), out


def no_nan_and_overflows_to_inf(out: torch.Tensor) -> None:
    assert not out.isnan().any() and torch.isposinf(out).any()


LOG_MEL_IMPLS = [
    pytest.param(ops.log_mel, id="kernel"),
    pytest.param(reference.log_mel, id="reference"),
]

# Rows run against the kernel and the reference: same errors, same documented results.
LOG_MEL_ROWS = [
    row(
        "dtype-int8",
        lambda f: f(torch.zeros(400, dtype=torch.int8), CFG),
        raises(TypeError, r"waveform: expected a floating-point tensor, got torch\.int8; convert"),
    ),
    row(
        "dtype-bool",
        lambda f: f(torch.zeros(2, 400, dtype=torch.bool), CFG),
        raises(TypeError, r"waveform: expected a floating-point tensor, got torch\.bool"),
    ),
    row(
        "dtype-complex128",
        lambda f: f(torch.zeros(400, dtype=torch.complex128), CFG),
        raises(TypeError, r"waveform: expected a real floating-point tensor, got complex"),
    ),
    row(
        "not-a-tensor",
        lambda f: f([0.0] * 400, CFG),
        raises(TypeError, r"waveform: expected a torch\.Tensor, got list"),
    ),
    row(
        "rank-0",
        lambda f: f(torch.tensor(0.5), CFG),
        raises(ValueError, r"waveform: expected shape \(\.\.\., time\), got a 0-d tensor"),
    ),
    row(
        "empty-time",
        lambda f: f(torch.zeros(2, 0), CFG),
        raises(ValueError, r"waveform: expected at least one sample, got shape \(2, 0\)"),
    ),
    row(
        "empty-batch",
        lambda f: f(torch.zeros(0, 3, 400), CFG),
        raises(ValueError, r"waveform: expected at least one sample, got shape \(0, 3, 400\)"),
    ),
    row(
        "config-not-a-config",
        lambda f: f(torch.zeros(400), "db"),
        raises(TypeError, r"config: expected FrontEndConfig, got str"),
    ),
    row(
        "rank-4-batch",
        lambda f: (
            f(x := torch.randn(2, 3, 1, 400), CFG),
            f(x.reshape(6, 400), CFG).reshape(2, 3, 1, 16, 26),
        ),
        identical,
    ),
    row("one-sample", lambda f: f(torch.ones(1), CFG), lambda out: out.shape == (16, 1)),
    row("nan-sample", lambda f: f(_with_sample(NAN), CFG), nan_in_touched_frames_only()),
    row(
        "nan-sample-top-db",
        lambda f: f(_with_sample(NAN), CFG_DB),
        nan_in_touched_frames_only(),
    ),
    row("inf-sample", lambda f: f(_with_sample(INF), CFG), nan_in_touched_frames_only()),
    row(  # NaN frames stay out of the per-example floor: the rest is clamped as without them
        "inf-sample-top-db",
        lambda f: f(_with_sample(-INF), CFG_DB),
        nan_in_touched_frames_only(),
    ),
    # Huge values and Inf in a linear spectrogram differ: see the kernel and reference tables.
    row(
        "transposed",
        lambda f: as_contiguous(lambda x: f(x, CFG), torch.randn(400, 3).t()),
        identical,
    ),
    row(
        "strided",
        lambda f: as_contiguous(lambda x: f(x, CFG), torch.randn(2, 800)[:, ::2]),
        identical,
    ),
    row(
        "expanded",
        lambda f: as_contiguous(lambda x: f(x, CFG), torch.randn(1, 400).expand(4, 400)),
        identical,
    ),
]


@pytest.mark.parametrize("impl", LOG_MEL_IMPLS)
@pytest.mark.parametrize("call, expect", LOG_MEL_ROWS)
def test_log_mel(impl, call, expect):
    run_row(call, expect, impl)


def _tables(**replace) -> FrontEndTables:
    return build_tables(CFG)._replace(**replace)


def _spiky(length: int = 400) -> torch.Tensor:
    """Two waveforms: one overflowing everywhere, one with a single huge sample."""
    x = torch.randn(2, length)
    x[0] *= HUGE
    x[1, 200] = HUGE
    return x


def same_finite_values_and_same_overflow(pair: tuple) -> None:
    kernel, oracle = pair
    assert not kernel.isnan().any() and torch.equal(kernel.isinf(), oracle.isinf())
    finite = kernel.isfinite()
    assert finite.any() and not finite.all()
    torch.testing.assert_close(kernel[finite], oracle[finite], rtol=1e-4, atol=1e-4)


def finite_and_equal_to_oracle(pair: tuple) -> None:
    kernel, oracle = pair
    assert kernel.isfinite().all() and oracle.isfinite().all(), kernel
    # Bins the signal has no energy in hold float32 rounding noise of the loud ones.
    scale = float(oracle.abs().max())
    torch.testing.assert_close(kernel, oracle, rtol=1e-4, atol=1e-5 * scale)


LOG_MEL_KERNEL_ROWS = [
    row(
        "device-meta",
        lambda: ops.log_mel(torch.zeros(2, 400, device="meta"), CFG),
        raises(ValueError, r"waveform: device meta is not supported \(cpu or cuda\)"),
    ),
    row(
        "tables-not-tables",
        lambda: ops.log_mel(torch.zeros(400), CFG, tables=tuple(build_tables(CFG))),
        raises(TypeError, r"tables: expected FrontEndTables .*, got tuple"),
    ),
    row(  # used to be read as float32 / int32 by the kernel: a segfault
        "tables-dtype-float64",
        lambda: ops.log_mel(
            torch.zeros(400), CFG, tables=FrontEndTables(*(t.double() for t in build_tables(CFG)))
        ),
        raises(TypeError, r"tables\.window: expected torch\.float32, got torch\.float64"),
    ),
    row(
        "tables-dtype-int64-offsets",
        lambda: ops.log_mel(
            torch.zeros(400), CFG, tables=_tables(fb_offsets=build_tables(CFG).fb_offsets.long())
        ),
        raises(TypeError, r"tables\.fb_offsets: expected torch\.int32, got torch\.int64"),
    ),
    row(
        "tables-shape",
        lambda: ops.log_mel(
            torch.zeros(400), CFG, tables=_tables(fb_first_bin=torch.zeros(3, dtype=torch.int32))
        ),
        raises(ValueError, r"tables\.fb_first_bin: expected shape \(16,\) for this config"),
    ),
    row(
        "tables-not-a-tensor",
        lambda: ops.log_mel(torch.zeros(400), CFG, tables=_tables(window=[0.0] * 64)),
        raises(TypeError, r"tables\.window: expected a torch\.Tensor, got list"),
    ),
    row(
        "huge-1e30-power",
        lambda: ops.log_mel(torch.full((2, 400), HUGE), CFG.replace(output="power")),
        no_nan_and_overflows_to_inf,
    ),
    # The power overflows float32, and the per-example top_db floor follows it to +inf.
    row("huge-1e30-db", lambda: ops.log_mel(torch.full((2, 400), HUGE), CFG_DB), all_positive_inf),
    row(  # +inf exactly where the float64 oracle leaves the float32 range, equal elsewhere
        "huge-matches-float64-oracle",
        lambda: (
            ops.log_mel(x := _spiky(), c := CFG.replace(output="power")),
            reference.log_mel(x, c, dtype=torch.float64).float(),
        ),
        same_finite_values_and_same_overflow,
    ),
    row(  # |X| ~1e31 fits in float32 although |X|^2 does not: the kernel must not square it
        "huge-1e30-magnitude",
        lambda: (
            ops.log_mel(x := torch.full((400,), HUGE), c := CFG.replace(power=1.0, output="power")),
            reference.log_mel(x, c, dtype=torch.float64).float(),
        ),
        finite_and_equal_to_oracle,
    ),
    row(
        "inf-sample-linear-top-db",
        lambda: ops.log_mel(_with_sample(INF), LINEAR_DB),
        nan_in_touched_frames_only(bins=33),
    ),
]


@pytest.mark.parametrize("call, expect", LOG_MEL_KERNEL_ROWS)
def test_log_mel_kernel(call, expect):
    run_row(call, expect)


LOG_MEL_REFERENCE_ROWS = [
    row(  # pure PyTorch: meta tensors give the output's shape
        "device-meta",
        lambda: reference.log_mel(torch.zeros(2, 400, device="meta"), CFG),
        lambda out: out.is_meta and out.shape == (2, 16, 26),
    ),
    row(  # torch.stft keeps +inf, and the per-example floor follows it
        "inf-sample-linear-top-db",
        lambda: reference.log_mel(_with_sample(INF), LINEAR_DB),
        positive_inf_or_nan,
    ),
    row(  # documented: a dense filterbank product meets inf * 0 where the power overflows
        "huge-1e30-power-float32",
        lambda: reference.log_mel(torch.full((2, 400), HUGE), CFG.replace(output="power")),
        lambda out: out.isnan().all(),
    ),
    row(
        "huge-1e30-float64-oracle",
        lambda: reference.log_mel(torch.full((400,), HUGE), CFG_DB, dtype=torch.float64),
        lambda out: out.isfinite().all(),
    ),
]


@pytest.mark.parametrize("call, expect", LOG_MEL_REFERENCE_ROWS)
def test_log_mel_reference(call, expect):
    run_row(call, expect)


# --- ops.spec_augment, ops.spec_augment_ and ops.reference.spec_augment --------------------


def _masks(batch: int = 2, device: str = "cpu") -> MaskParams:
    """Every example: features [2, 5) and frames [3, 7) masked, filled with 0."""
    ranges = functools.partial(torch.tensor, dtype=torch.int32, device=device)
    return MaskParams(
        ranges([[[2, 5]]] * batch), ranges([[[3, 7]]] * batch), torch.zeros(batch, device=device)
    )


def _covered(shape: tuple, masks: MaskParams) -> torch.Tensor:
    """Where the masks apply, as a boolean tensor of ``shape``."""
    ones = MaskParams(masks.freq, masks.time, torch.ones_like(masks.values))
    return reference.spec_augment(torch.zeros(shape), ones) == 1


def nan_kept_outside_masks(out: torch.Tensor) -> None:
    """All-NaN input: NaN outside the masks, the fill value inside."""
    covered = _covered(out.shape, _masks(out.shape[0]))
    assert torch.equal(out.isnan(), ~covered) and (out[covered] == 0).all()


def huge_kept_outside_masks(out: torch.Tensor) -> None:
    covered = _covered(out.shape, _masks(out.shape[0]))
    assert (out[~covered] == HUGE).all() and (out[covered] == 0).all()


SPEC_AUGMENT_OPS = [
    pytest.param(ops.spec_augment, id="spec_augment"),
    pytest.param(ops.spec_augment_, id="spec_augment_"),
]

# Rows run against the out-of-place and the in-place op.
SPEC_AUGMENT_ROWS = [
    row(
        "dtype-int32",
        lambda f: f(torch.zeros(2, 16, 20, dtype=torch.int32), _masks()),
        raises(TypeError, r"spec: expected float32 features, got torch\.int32"),
    ),
    row(
        "dtype-bool",
        lambda f: f(torch.zeros(2, 16, 20, dtype=torch.bool), _masks()),
        raises(TypeError, r"spec: expected float32 features, got torch\.bool"),
    ),
    row(
        "dtype-complex64",
        lambda f: f(torch.zeros(2, 16, 20, dtype=torch.complex64), _masks()),
        raises(TypeError, r"spec: expected float32 features, got torch\.complex64"),
    ),
    row(
        "dtype-float64",
        lambda f: f(torch.zeros(2, 16, 20, dtype=torch.float64), _masks()),
        raises(TypeError, r"spec: expected float32 features, got torch\.float64"),
    ),
    row(
        "device-meta",
        lambda f: f(torch.zeros(2, 16, 20, device="meta"), _masks()),
        raises(ValueError, r"spec: device meta is not supported"),
    ),
    row(
        "not-a-tensor",
        lambda f: f([[0.0] * 20] * 16, _masks()),
        raises(TypeError, r"spec: expected a torch\.Tensor, got list"),
    ),
    row(
        "rank-1",
        lambda f: f(torch.zeros(20), _masks()),
        raises(ValueError, r"spec: expected shape \(B, \[C,\] F, T\), got \(20,\)"),
    ),
    row(
        "empty-frames",
        lambda f: f(torch.zeros(2, 16, 0), _masks()),
        raises(ValueError, r"spec: expected non-empty features, got shape \(2, 16, 0\)"),
    ),
    row(
        "masks-batch-mismatch",
        lambda f: f(torch.zeros(2, 16, 20), _masks(3)),
        raises(ValueError, r"masks\.freq: expected shape \(2, n, 2\), got \(3, 1, 2\)"),
    ),
    row(
        "masks-values-float64",
        lambda f: f(
            torch.zeros(2, 16, 20),
            MaskParams(_masks().freq, _masks().time, torch.zeros(2, dtype=torch.float64)),
        ),
        raises(TypeError, r"masks\.values: expected torch\.float32, got torch\.float64"),
    ),
    row(
        "masks-device-meta",
        lambda f: f(torch.zeros(2, 16, 20), _masks(device="meta")),
        raises(ValueError, r"masks\.freq is on meta but the input is on cpu"),
    ),
    row("nan", lambda f: f(torch.full((2, 16, 20), NAN), _masks()), nan_kept_outside_masks),
    row("huge-1e30", lambda f: f(torch.full((2, 16, 20), HUGE), _masks()), huge_kept_outside_masks),
    row(
        "channels-share-masks",
        lambda f: (
            f(x := torch.randn(2, 3, 16, 20), _masks()),
            reference.spec_augment(x, _masks()),
        ),
        identical,
    ),
]


@pytest.mark.parametrize("op", SPEC_AUGMENT_OPS)
@pytest.mark.parametrize("call, expect", SPEC_AUGMENT_ROWS)
def test_spec_augment(op, call, expect):
    run_row(call, expect, op)


SPEC_AUGMENT_LAYOUT_ROWS = [
    row(
        "out-of-place-transposed",
        lambda: as_contiguous(
            lambda x: ops.spec_augment(x, _masks()), torch.randn(2, 20, 16).transpose(1, 2)
        ),
        identical,
    ),
    row(
        "out-of-place-expanded",
        lambda: as_contiguous(
            lambda x: ops.spec_augment(x, _masks()), torch.randn(1, 16, 20).expand(2, 16, 20)
        ),
        identical,
    ),
    row(
        "in-place-transposed",
        lambda: ops.spec_augment_(torch.randn(2, 20, 16).transpose(1, 2), _masks()),
        raises(ValueError, r"spec: the in-place spec_augment_ needs a contiguous tensor"),
    ),
    row(  # writing through stride 0 would mask example 0 with example 1's masks
        "in-place-expanded",
        lambda: ops.spec_augment_(torch.randn(1, 16, 20).expand(2, 16, 20), _masks()),
        raises(ValueError, r"spec: the in-place spec_augment_ needs a contiguous tensor"),
    ),
]


@pytest.mark.parametrize("call, expect", SPEC_AUGMENT_LAYOUT_ROWS)
def test_spec_augment_layouts(call, expect):
    run_row(call, expect)


def _reference_spec_augment_float64() -> tuple:
    """Any real floating dtype: the kernel's result, in that dtype."""
    x = torch.randn(2, 16, 20, dtype=torch.float64)
    out = reference.spec_augment(x, _masks())
    assert out.dtype == torch.float64
    return out.float(), ops.spec_augment(x.float(), _masks())


SPEC_AUGMENT_REFERENCE_ROWS = [
    row(
        "dtype-int64",
        lambda: reference.spec_augment(torch.zeros(2, 16, 20, dtype=torch.long), _masks()),
        raises(TypeError, r"spec: expected real floating-point features, got torch\.int64"),
    ),
    row(
        "rank-2",
        lambda: reference.spec_augment(torch.zeros(16, 20), _masks()),
        raises(ValueError, r"spec: expected shape \(B, \[C,\] F, T\), got \(16, 20\)"),
    ),
    row(
        "masks-not-mask-params",
        lambda: reference.spec_augment(torch.zeros(2, 16, 20), {"freq": _masks().freq}),
        raises(TypeError, r"masks: expected MaskParams, got dict"),
    ),
    row(
        "masks-batch-mismatch",
        lambda: reference.spec_augment(torch.zeros(3, 16, 20), _masks()),
        raises(ValueError, r"masks\.freq: expected shape \(3, n, 2\), got \(2, 1, 2\)"),
    ),
    row("dtype-float64", _reference_spec_augment_float64, identical),
    row(
        "device-meta",
        lambda: reference.spec_augment(
            torch.zeros(2, 16, 20, device="meta"), _masks(device="meta")
        ),
        lambda out: out.is_meta and out.shape == (2, 16, 20),
    ),
    row(
        "empty-frames",
        lambda: reference.spec_augment(torch.zeros(2, 16, 0), _masks()),
        lambda out: out.shape == (2, 16, 0),
    ),
    row(
        "transposed",
        lambda: as_contiguous(
            lambda x: reference.spec_augment(x, _masks()), torch.randn(2, 20, 16).transpose(1, 2)
        ),
        identical,
    ),
]


@pytest.mark.parametrize("call, expect", SPEC_AUGMENT_REFERENCE_ROWS)
def test_spec_augment_reference(call, expect):
    run_row(call, expect)


# --- ops.hr_fuse and ops.reference.hr_fuse -------------------------------------------------


def _t(*shape, dtype=torch.float32, device="cpu", fill=None) -> torch.Tensor:
    if fill is not None:
        return torch.full(shape, fill, dtype=dtype, device=device)
    return torch.randn(shape, device=device).to(dtype)


def _hr_fuse_nan(f: Callable) -> torch.Tensor:
    low = _t(1, 2, 4, 4, fill=1.0)
    low[0, 1, 2, 3] = NAN  # feeds the 2x2 block [4:6, 6:8] of channel 1
    return f([_t(1, 2, 8, 8, fill=1.0)], [low])


def nan_in_the_upsampled_block(out: torch.Tensor) -> None:
    assert out.isnan().sum() == 4 and out[0, 1, 4:6, 6:8].isnan().all()


def _hr_fuse_transposed(f: Callable) -> tuple:
    other, low = _t(1, 2, 8, 8), _t(1, 2, 4, 4)
    return as_contiguous(lambda x: f([x, other], [low]), _t(1, 2, 8, 8).transpose(2, 3))


def _hr_fuse_expanded(f: Callable) -> tuple:
    same = _t(3, 2, 8, 8)
    return as_contiguous(lambda x: f([same], [x]), _t(1, 2, 4, 4).expand(3, -1, -1, -1))


HR_FUSE_IMPLS = [
    pytest.param(ops.hr_fuse, id="kernel"),
    pytest.param(reference.hr_fuse, id="reference"),
]

# Rows run against the kernel and the reference: one validation, the same results.
HR_FUSE_ROWS = [
    row(
        "dtype-bool",
        lambda f: f([_t(1, 2, 8, 8, dtype=torch.bool)], []),
        raises(
            TypeError,
            r"same_res\[0\]: expected float32, float16, bfloat16 or float64, got torch\.bool",
        ),
    ),
    row(
        "dtype-int32-low-res",
        lambda f: f([_t(1, 2, 8, 8)], [_t(1, 2, 4, 4, dtype=torch.int32)]),
        raises(TypeError, r"low_res\[0\]: expected float32, .* got torch\.int32"),
    ),
    row(
        "rank-5",
        lambda f: f([_t(1, 1, 2, 8, 8)], []),
        raises(ValueError, r"same_res\[0\]: expected a 4-D tensor \(B, C, H, W\), got shape"),
    ),
    row(
        "empty-width",
        lambda f: f([_t(1, 2, 3, 0)], []),
        raises(ValueError, r"same_res\[0\]: expected H, W >= 1, got shape \(1, 2, 3, 0\)"),
    ),
    row(
        "low-res-taller",
        lambda f: f([_t(1, 2, 8, 8)], [_t(1, 2, 9, 4)]),
        raises(ValueError, r"low_res\[0\]: expected 1 <= \(h, w\) <= \(H, W\) = \(8, 8\)"),
    ),
    row(
        "low-res-device-meta",
        lambda f: f([_t(1, 2, 8, 8)], [_t(1, 2, 4, 4, device="meta")]),
        raises(ValueError, r"low_res\[0\] is on meta but same_res\[0\] is on cpu"),
    ),
    row(
        "not-a-list",
        lambda f: f([_t(1, 2, 8, 8)], _t(1, 2, 4, 4)),
        raises(TypeError, r"low_res: expected a list or tuple of tensors, got Tensor"),
    ),
    row("nan-low-res", _hr_fuse_nan, nan_in_the_upsampled_block),
    row(
        "huge-1e30",
        lambda f: f([_t(1, 2, 8, 8, fill=HUGE)], [_t(1, 2, 4, 4, fill=HUGE)]),
        lambda out: (out == 2 * HUGE).all(),
    ),
    row(  # float32 sums overflow to +inf, as the eager expression does
        "huge-overflow",
        lambda f: f([_t(1, 2, 8, 8, fill=3e38)], [_t(1, 2, 4, 4, fill=3e38)]),
        all_positive_inf,
    ),
    row("transposed-same-res", _hr_fuse_transposed, identical),
    row("expanded-low-res", _hr_fuse_expanded, identical),
]


@pytest.mark.parametrize("impl", HR_FUSE_IMPLS)
@pytest.mark.parametrize("call, expect", HR_FUSE_ROWS)
def test_hr_fuse(impl, call, expect):
    run_row(call, expect, impl)


HR_FUSE_DEVICE_ROWS = [
    row(
        "kernel-device-meta",
        lambda: ops.hr_fuse([_t(1, 2, 8, 8, device="meta")], [_t(1, 2, 4, 4, device="meta")]),
        raises(ValueError, r"same_res\[0\]: device meta is not supported \(cpu or cuda\)"),
    ),
    row(
        "reference-device-meta",
        lambda: reference.hr_fuse([_t(1, 2, 8, 8, device="meta")], [_t(1, 2, 4, 4, device="meta")]),
        lambda out: out.is_meta and out.shape == (1, 2, 8, 8),
    ),
]


@pytest.mark.parametrize("call, expect", HR_FUSE_DEVICE_ROWS)
def test_hr_fuse_devices(call, expect):
    run_row(call, expect)


# --- features: LogMel, Spectrogram, MFCC, FrontEnd -----------------------------------------

SMALL = dict(n_fft=64, hop_length=16)

FEATURES_ROWS = [
    row(
        "config-not-a-config",
        lambda: LogMel({"n_fft": 64}),
        raises(TypeError, r"LogMel config: expected FrontEndConfig or None, got dict"),
    ),
    row(
        "override-bad-value",
        lambda: FrontEnd(**SMALL, n_mels=0),
        raises(ValueError, r"FrontEndConfig\.n_mels=0: expected None \(linear spectrogram\)"),
    ),
    row(  # used to return 13 cepstra from a module documented as n_fft // 2 + 1 bins
        "spectrogram-with-n-mfcc",
        lambda: Spectrogram(**SMALL, n_mfcc=13),
        raises(ValueError, r"Spectrogram needs n_mfcc=None .* got n_mfcc=13"),
    ),
    row(  # used to return a DCT of linear bins under the name MFCC
        "mfcc-without-mels",
        lambda: MFCC(n_mfcc=13, n_mels=None, **SMALL),
        raises(ValueError, r"MFCC needs n_mels set"),
    ),
    row(
        "mfcc-too-many",
        lambda: MFCC(n_mfcc=17, n_mels=16, **SMALL),
        raises(ValueError, r"n_mfcc=17: expected None or an integer from 1 to the number of bands"),
    ),
    row(
        "forward-dtype-int16",
        lambda: LogMel(**SMALL, n_mels=16)(torch.zeros(400, dtype=torch.int16)),
        raises(TypeError, r"waveform: expected a floating-point tensor, got torch\.int16"),
    ),
    row(
        "forward-device-meta",
        lambda: MFCC(n_mfcc=8, n_mels=16, **SMALL)(torch.zeros(400, device="meta")),
        raises(ValueError, r"waveform: device meta is not supported"),
    ),
    row(
        "forward-empty",
        lambda: Spectrogram(**SMALL)(torch.zeros(3, 0)),
        raises(ValueError, r"waveform: expected at least one sample, got shape \(3, 0\)"),
    ),
    row(
        "forward-nan",
        lambda: LogMel(CFG_DB)(_with_sample(NAN)),
        nan_in_touched_frames_only(),
    ),
    row(
        "forward-huge-1e30",
        lambda: Spectrogram(**SMALL, output="power")(torch.full((400,), HUGE)),
        no_nan_and_overflows_to_inf,
    ),
    row(
        "forward-transposed",
        lambda: as_contiguous(MFCC(n_mfcc=8, n_mels=16, **SMALL), torch.randn(400, 2).t()),
        identical,
    ),
]


@pytest.mark.parametrize("call, expect", FEATURES_ROWS)
def test_features(call, expect):
    run_row(call, expect)


# --- FrontEndConfig ------------------------------------------------------------------------


def config_error(field: str, value: str) -> Raises:
    """``FrontEndConfig.<field>=<value>: expected ...``, a ValueError naming the field."""
    return raises(ValueError, rf"FrontEndConfig\.{field}={value}: expected ")


FRONTEND_CONFIG_ROWS = [
    row(
        "sample-rate-zero",
        lambda: ef.FrontEndConfig(sample_rate=0),
        config_error("sample_rate", "0"),
    ),
    row(
        "sample-rate-negative",
        lambda: ef.FrontEndConfig(sample_rate=-16000),
        config_error("sample_rate", "-16000"),
    ),
    row(
        "sample-rate-float",
        lambda: ef.FrontEndConfig(sample_rate=16000.0),
        config_error("sample_rate", r"16000\.0"),
    ),
    row(
        "sample-rate-str",
        lambda: ef.FrontEndConfig(sample_rate="16000"),
        config_error("sample_rate", "'16000'"),
    ),
    row(
        "sample-rate-bool",
        lambda: ef.FrontEndConfig(sample_rate=True),
        config_error("sample_rate", "True"),
    ),
    # The next five raised bare TypeErrors from comparisons ("'<' not supported ...").
    row("f-max-str", lambda: ef.FrontEndConfig(f_max="8000"), config_error("f_max", "'8000'")),
    row("f-min-none", lambda: ef.FrontEndConfig(f_min=None), config_error("f_min", "None")),
    row("eps-str", lambda: ef.FrontEndConfig(eps="1e-6"), config_error("eps", "'1e-6'")),
    row("amin-none", lambda: ef.FrontEndConfig(amin=None), config_error("amin", "None")),
    row("top-db-str", lambda: ef.FrontEndConfig(top_db="80"), config_error("top_db", "'80'")),
    # Accepted before: every feature would have been the same constant.
    row("eps-inf", lambda: ef.FrontEndConfig(eps=INF), config_error("eps", "inf")),
    row("amin-inf", lambda: ef.FrontEndConfig(amin=INF), config_error("amin", "inf")),
    row("f-min-nan", lambda: ef.FrontEndConfig(f_min=NAN), config_error("f_min", "nan")),
    row("f-min-huge", lambda: ef.FrontEndConfig(f_min=HUGE), config_error("f_min", r"1e\+30")),
    row("power-bool", lambda: ef.FrontEndConfig(power=True), config_error("power", "True")),
    row("n-fft-huge", lambda: ef.FrontEndConfig(n_fft=2**40), config_error("n_fft", str(2**40))),
    # Used to reach the compiled core's C int and fail there with pybind's argument dump.
    row(
        "hop-length-beyond-c-int",
        lambda: ef.FrontEndConfig(hop_length=2**31),
        config_error("hop_length", str(2**31)),
    ),
    # Used to fail in torch.linspace with "Overflow when unpacking long long".
    row(
        "n-mels-huge",
        lambda: ef.FrontEndConfig(n_mels=10**30),
        config_error("n_mels", "1" + "0" * 30),
    ),
    row("n-mels-float", lambda: ef.FrontEndConfig(n_mels=64.0), config_error("n_mels", r"64\.0")),
    row(
        "n-mfcc-negative",
        lambda: ef.FrontEndConfig(n_mfcc=-13),
        config_error("n_mfcc", "-13"),
    ),
    row(
        "unknown-field",
        lambda: ef.FrontEndConfig(sample_rat=16000),
        raises(TypeError, r"unexpected keyword argument 'sample_rat'"),
    ),
]


@pytest.mark.parametrize("call, expect", FRONTEND_CONFIG_ROWS)
def test_frontend_config(call, expect):
    run_row(call, expect)


# --- augment.SpecAugment: constructor, draw, forward ---------------------------------------


def spec_augment_error(field: str, value: str) -> Raises:
    return raises(ValueError, rf"SpecAugment {field}={value}: expected ")


def _masked_by_module(x: torch.Tensor, **options) -> tuple:
    """``(module output, the same masks drawn separately and applied)`` for one seed."""
    module = SpecAugment(**options).train()
    out = module(x, generator=torch.Generator().manual_seed(3))
    masks = module.draw(*x.shape, generator=torch.Generator().manual_seed(3), features_for_mean=x)
    return out, masks


def nan_kept_outside_drawn_masks(pair: tuple) -> None:
    out, masks = pair
    covered = _covered(out.shape, masks)
    assert covered.any() and not covered.all()
    assert torch.equal(out.isnan(), ~covered)


def _one_nan_per_example() -> torch.Tensor:
    features = torch.randn(2, 16, 20, generator=torch.Generator().manual_seed(5))
    features[:, 7, 9] = NAN
    return features


def mean_fill_of_nan_is_nan(pair: tuple) -> None:
    """``mask_value="mean"`` over features with one NaN: the mean is NaN, so the masked cells
    are NaN, and every cell outside the masks is the input's, unchanged."""
    out, masks = pair
    features = _one_nan_per_example()
    covered = _covered(out.shape, masks)
    assert covered.any() and not covered.all()
    assert out[covered].isnan().all()
    torch.testing.assert_close(out[~covered], features[~covered], rtol=0, atol=0, equal_nan=True)


SPEC_AUGMENT_MODULE_ROWS = [
    row(
        "freq-masks-bool",
        lambda: SpecAugment(freq_masks=True),
        spec_augment_error("freq_masks", "True"),
    ),
    row(
        "freq-width-float",
        lambda: SpecAugment(freq_width=2.0),
        spec_augment_error("freq_width", r"2\.0"),
    ),
    row(
        "time-masks-negative",
        lambda: SpecAugment(time_masks=-1),
        spec_augment_error("time_masks", "-1"),
    ),
    row(
        "time-width-nan",
        lambda: SpecAugment(time_width=NAN),
        spec_augment_error("time_width", "nan"),
    ),
    row(
        "time-width-str",
        lambda: SpecAugment(time_width="0.1"),
        spec_augment_error("time_width", "'0.1'"),
    ),
    row(
        "mask-value-inf",
        lambda: SpecAugment(mask_value=INF),
        spec_augment_error("mask_value", "inf"),
    ),
    row("p-nan", lambda: SpecAugment(p=NAN), spec_augment_error("p", "nan")),
    row("p-str", lambda: SpecAugment(p="0.5"), spec_augment_error("p", "'0.5'")),
    row(
        "draw-batch-negative",
        lambda: SpecAugment().draw(-1, 16, 20),
        raises(ValueError, r"SpecAugment\.draw batch=-1: expected an integer >= 0"),
    ),
    row(
        "draw-frames-float",
        lambda: SpecAugment().draw(2, 16, 20.0),
        raises(ValueError, r"SpecAugment\.draw frames=20\.0: expected an integer >= 0"),
    ),
    row(
        "draw-generator-not-a-generator",
        lambda: SpecAugment().draw(2, 16, 20, generator=3),
        raises(TypeError, r"generator: expected a torch\.Generator or None, got int"),
    ),
    row(
        "draw-device-meta",
        lambda: SpecAugment().draw(2, 16, 20, device="meta"),
        lambda m: m.freq.is_meta and m.freq.shape == (2, 2, 2) and m.values.shape == (2,),
    ),
    row(
        "forward-dtype-int64",
        lambda: SpecAugment().train()(torch.zeros(2, 16, 20, dtype=torch.long)),
        raises(TypeError, r"SpecAugment: expected float32 features, got torch\.int64"),
    ),
    row(
        "forward-dtype-float64",
        lambda: SpecAugment().train()(torch.zeros(2, 16, 20, dtype=torch.float64)),
        raises(TypeError, r"SpecAugment: expected float32 features, got torch\.float64"),
    ),
    row(
        "forward-device-meta",
        lambda: SpecAugment().train()(torch.zeros(2, 16, 20, device="meta")),
        raises(ValueError, r"SpecAugment features: device meta is not supported"),
    ),
    row(
        "forward-not-a-tensor",
        lambda: SpecAugment().train()([[0.0] * 20] * 16),
        raises(TypeError, r"SpecAugment: expected a features tensor, got list"),
    ),
    row(
        "forward-rank-1",
        lambda: SpecAugment().train()(torch.zeros(20)),
        raises(ValueError, r"SpecAugment: expected \(B, \[C,\] F, T\) features, got \(20,\)"),
    ),
    row(
        "forward-empty",
        lambda: SpecAugment().train()(torch.zeros(0, 16, 20)),
        raises(ValueError, r"SpecAugment: expected non-empty features, got shape \(0, 16, 20\)"),
    ),
    row(  # documented: eval mode returns its input itself, whatever it is
        "forward-eval-is-identity",
        lambda: (x := torch.zeros(20, dtype=torch.long), SpecAugment().eval()(x)),
        lambda pair: pair[1] is pair[0],
    ),
    row(
        "forward-nan",
        lambda: _masked_by_module(torch.full((2, 16, 20), NAN), time_width=5),
        nan_kept_outside_drawn_masks,
    ),
    row(
        "forward-nan-mean-fill",
        lambda: _masked_by_module(_one_nan_per_example(), mask_value="mean"),
        mean_fill_of_nan_is_nan,
    ),
    row(
        "forward-transposed",
        lambda: as_contiguous(
            lambda x: SpecAugment().train()(x, generator=torch.Generator().manual_seed(3)),
            torch.randn(2, 20, 16).transpose(1, 2),
        ),
        identical,
    ),
]


@pytest.mark.parametrize("call, expect", SPEC_AUGMENT_MODULE_ROWS)
def test_spec_augment_module(call, expect):
    run_row(call, expect)


# --- models.create and model forward -------------------------------------------------------


@functools.cache
def _model(name: str) -> torch.nn.Module:
    return models.create(name, num_classes=4).eval()


MODEL_CREATE_ROWS = [
    row(
        "unknown-name",
        lambda: models.create("emohrnet_w48", 4),
        raises(ValueError, r"unknown model 'emohrnet_w48'; available: centerloss_cnn_mfcc, "),
    ),
    row("name-none", lambda: models.create(None, 4), raises(ValueError, r"unknown model None")),
    row(
        "num-classes-zero",
        lambda: models.create("emohrnet_small", 0),
        raises(ValueError, r"num_classes=0: expected an integer >= 2"),
    ),
    row(
        "num-classes-float",
        lambda: models.create("centerloss_cnn_spec", 7.0),
        raises(ValueError, r"num_classes=7\.0: expected an integer >= 2"),
    ),
    row(
        "num-classes-str",
        lambda: models.create("centerloss_cnn_spec", "7"),
        raises(ValueError, r"num_classes='7': expected an integer >= 2"),
    ),
    row(
        "override-unknown",
        lambda: models.create("emohrnet_small", 4, dropuot=0.1),
        raises(TypeError, r"model 'emohrnet_small' has no config field\(s\) \['dropuot'\]"),
    ),
    # The rest used to fail deep inside torch.nn, or to build a broken model silently.
    row(
        "override-channels-int",
        lambda: models.create("centerloss_cnn_spec", 4, channels=32),
        raises(ValueError, r"CenterLossCNNConfig\.channels=32: expected a tuple of integers >= 1"),
    ),
    row(
        "override-embedding-float",
        lambda: models.create("centerloss_cnn_spec", 4, embedding_dim=12.5),
        raises(ValueError, r"CenterLossCNNConfig\.embedding_dim=12\.5: expected an integer >= 1"),
    ),
    row(
        "override-in-chans-zero",
        lambda: models.create("centerloss_cnn_spec", 4, in_chans=0),
        raises(ValueError, r"CenterLossCNNConfig\.in_chans=0: expected an integer >= 1"),
    ),
    row(
        "override-frontend-dict",
        lambda: models.create("centerloss_cnn_spec", 4, frontend={"n_mels": None}),
        raises(ValueError, r"CenterLossCNNConfig\.frontend=\{'n_mels': None\}: expected a Front"),
    ),
    row(
        "override-stage-tuple",
        lambda: models.create("emohrnet_small", 4, stage2=(1, 2)),
        raises(ValueError, r"EmoHRNetConfig\.stage2=\(1, 2\): expected a StageConfig"),
    ),
    row(
        "override-hidden-zero",
        lambda: models.create("emohrnet_small", 4, hidden=0),
        raises(ValueError, r"EmoHRNetConfig\.hidden=0: expected an integer >= 1"),
    ),
    row(
        "override-dropout-nan",
        lambda: models.create("emohrnet_small", 4, dropout=NAN),
        raises(ValueError, r"EmoHRNetConfig\.dropout=nan: expected \[0, 1\)"),
    ),
]


@pytest.mark.parametrize("call, expect", MODEL_CREATE_ROWS)
def test_models_create(call, expect):
    run_row(call, expect)


MODELS = [
    pytest.param("emohrnet_small", id="emohrnet_small"),
    pytest.param("centerloss_cnn_spec", id="centerloss_cnn_spec"),
]


def _one_nan_feature() -> torch.Tensor:
    x = torch.randn(2, 32, 32)
    x[0, 3, 5] = NAN
    return x


def nan_reaches_its_example_only(out) -> None:
    """One NaN feature reaches every logit of its example (convolutions, then global pooling);
    in eval mode the other example is untouched."""
    assert out.logits[0].isnan().all() and out.logits[1].isfinite().all()


def logits_finite(out) -> None:
    assert out.logits.isfinite().all(), out.logits


# Rows run against both models; "{model}" in a message is the model's class name.
MODEL_FORWARD_ROWS = [
    row(
        "dtype-bool",
        lambda m: m(torch.zeros(2, 32, 32, dtype=torch.bool)),
        raises(TypeError, r"{model}: expected floating-point features, got torch\.bool"),
    ),
    row(
        "dtype-complex64",
        lambda m: m(torch.zeros(2, 32, 32, dtype=torch.complex64)),
        raises(TypeError, r"{model}: expected floating-point features, got torch\.complex64"),
    ),
    row(  # used to be torch's "expected scalar type Double but found Float"
        "dtype-float64",
        lambda m: m(torch.zeros(2, 32, 32, dtype=torch.float64)),
        raises(
            TypeError,
            r"{model}: features are torch\.float64 but the model's weights are torch\.float32",
        ),
    ),
    row(  # used to be torch's "Tensor on device cpu is not on the expected device meta!"
        "device-meta",
        lambda m: m(torch.zeros(2, 32, 32, device="meta")),
        raises(ValueError, r"{model}: features are on meta but the model is on cpu; move"),
    ),
    row(
        "not-a-tensor",
        lambda m: m([[0.0] * 32] * 32),
        raises(TypeError, r"{model}: expected a features tensor, got list"),
    ),
    row(
        "rank-2",
        lambda m: m(torch.zeros(32, 32)),
        raises(ValueError, r"{model}: expected features \(B, F, T\) or \(B, 1, F, T\), got shape"),
    ),
    row(
        "rank-5",
        lambda m: m(torch.zeros(2, 1, 1, 32, 32)),
        raises(ValueError, r"got shape \(2, 1, 1, 32, 32\)"),
    ),
    row(
        "too-few-frames",
        lambda m: m(torch.zeros(2, 32, 8)),
        raises(ValueError, r"{model}: features of 32 bins x 8 frames are too small"),
    ),
    row(
        "empty-batch",
        lambda m: m(torch.zeros(0, 32, 32)),
        lambda out: out.logits.shape == (0, 4) and out.embedding.shape[0] == 0,
    ),
    row(
        "nan",
        lambda m: m(_one_nan_feature()),
        nan_reaches_its_example_only,
    ),
    row("huge-1e30", lambda m: m(torch.full((2, 32, 32), HUGE)), logits_finite),
    row(
        "transposed",
        lambda m: as_contiguous(lambda x: m(x).logits, torch.randn(2, 40, 32).transpose(1, 2)),
        close,
    ),
    row(
        "expanded",
        lambda m: as_contiguous(lambda x: m(x).logits, torch.randn(1, 32, 40).expand(3, -1, -1)),
        close,
    ),
]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("call, expect", MODEL_FORWARD_ROWS)
def test_model_forward(name, call, expect):
    model = _model(name)
    if isinstance(expect, Raises):
        expect = Raises(expect.error, expect.match.format(model=type(model).__name__))
    with torch.no_grad():
        run_row(call, expect, model)


def test_model_forward_batch_of_one_in_training():
    """Documented torch behaviour, not ours: BatchNorm cannot train on one value per channel,
    which EmoHRNet's head reaches for one example of the minimum size (32 x 32)."""
    model = models.create("emohrnet_small", num_classes=4).train()
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training"):
        model(torch.zeros(1, 32, 32))
    assert model(torch.zeros(1, 64, 64)).logits.shape == (1, 4)  # larger inputs train


# --- losses.CenterLoss ---------------------------------------------------------------------


def _center_loss(train: bool = False) -> CenterLoss:
    return CenterLoss(num_classes=3, dim=4).train(train)


def _labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def _center_loss_update(embedding: torch.Tensor, labels: torch.Tensor) -> tuple:
    loss_fn = _center_loss(train=True)
    return loss_fn(embedding, labels), loss_fn.centers


def nan_loss_and_nan_centers_of_present_classes(pair: tuple) -> None:
    loss, centers = pair
    assert loss.isnan() and centers[:2].isnan().all() and (centers[2] == 0).all()


def empty_batch_nan_loss_centers_unchanged(pair: tuple) -> None:
    loss, centers = pair
    assert loss.isnan() and (centers == 0).all()


def overflowing_loss_finite_centers(pair: tuple) -> None:
    loss, centers = pair
    assert torch.isposinf(loss) and centers.isfinite().all()


CENTER_LOSS_ROWS = [
    row(
        "num-classes-float",
        lambda: CenterLoss(num_classes=2.5, dim=4),
        raises(ValueError, r"CenterLoss num_classes=2\.5: expected >= 2"),
    ),
    row(
        "num-classes-str",
        lambda: CenterLoss(num_classes="4", dim=4),
        raises(ValueError, r"CenterLoss num_classes='4': expected >= 2"),
    ),
    row(
        "dim-float",
        lambda: CenterLoss(num_classes=4, dim=4.5),
        raises(ValueError, r"CenterLoss dim=4\.5: expected >= 1"),
    ),
    row(
        "alpha-str",
        lambda: CenterLoss(num_classes=4, dim=4, alpha="0.5"),
        raises(ValueError, r"CenterLoss alpha='0\.5': expected a rate in \(0, 1\]"),
    ),
    row(
        "alpha-nan",
        lambda: CenterLoss(num_classes=4, dim=4, alpha=NAN),
        raises(ValueError, r"CenterLoss alpha=nan: expected a rate in \(0, 1\]"),
    ),
    row(
        "embedding-dtype-int64",
        lambda: _center_loss()(torch.zeros(2, 4, dtype=torch.long), _labels(0, 1)),
        raises(TypeError, r"embedding: expected a floating-point tensor, got torch\.int64"),
    ),
    row(
        "embedding-dtype-bool",
        lambda: _center_loss()(torch.zeros(2, 4, dtype=torch.bool), _labels(0, 1)),
        raises(TypeError, r"embedding: expected a floating-point tensor, got torch\.bool"),
    ),
    row(  # used to be accepted, with the imaginary part dropped in the update
        "embedding-dtype-complex64",
        lambda: _center_loss()(torch.zeros(2, 4, dtype=torch.complex64), _labels(0, 1)),
        raises(TypeError, r"embedding: expected a floating-point tensor, got torch\.complex64"),
    ),
    row(
        "embedding-device-meta",
        lambda: _center_loss()(torch.zeros(2, 4, device="meta"), _labels(0, 1)),
        raises(ValueError, r"embedding is on meta but the centers are on cpu; move the loss"),
    ),
    row(  # used to return a meta NaN without complaint
        "labels-device-meta",
        lambda: _center_loss()(torch.zeros(2, 4), _labels(0, 1).to("meta")),
        raises(ValueError, r"labels is on meta but the centers are on cpu"),
    ),
    row(
        "labels-not-a-tensor",
        lambda: _center_loss()(torch.zeros(2, 4), [0, 1]),
        raises(TypeError, r"labels: expected a torch\.Tensor, got list"),
    ),
    row(
        "embedding-rank-3",
        lambda: _center_loss()(torch.zeros(2, 4, 1), _labels(0, 1)),
        raises(ValueError, r"embedding: expected \(B, 4\), got \(2, 4, 1\)"),
    ),
    row(
        "labels-rank-2",
        lambda: _center_loss()(torch.zeros(2, 4), _labels(0, 1)[:, None]),
        raises(ValueError, r"labels: expected \(2,\) int64, got \(2, 1\) torch\.int64"),
    ),
    row(  # used to be an IndexError that named no argument
        "labels-too-large",
        lambda: _center_loss()(torch.zeros(2, 4), _labels(0, 3)),
        raises(ValueError, r"labels: expected class indices in \[0, 3\), got \[0, 3\]"),
    ),
    row(  # used to pick the last center silently in eval mode
        "labels-negative",
        lambda: _center_loss()(torch.zeros(2, 4), _labels(-1, 1)),
        raises(ValueError, r"labels: expected class indices in \[0, 3\), got \[-1, 1\]"),
    ),
    row(
        "empty-batch",
        lambda: _center_loss_update(torch.zeros(0, 4), _labels()),
        empty_batch_nan_loss_centers_unchanged,
    ),
    row(
        "nan",
        lambda: _center_loss_update(torch.full((2, 4), NAN), _labels(0, 1)),
        nan_loss_and_nan_centers_of_present_classes,
    ),
    row(
        "huge-1e30",
        lambda: _center_loss_update(torch.full((2, 4), HUGE), _labels(0, 1)),
        overflowing_loss_finite_centers,
    ),
    row(
        "transposed",
        lambda: as_contiguous(lambda e: _center_loss()(e, _labels(0, 1, 2)), torch.randn(4, 3).t()),
        identical,
    ),
]


@pytest.mark.parametrize("call, expect", CENTER_LOSS_ROWS)
def test_center_loss(call, expect):
    run_row(call, expect)


# --- audio.load and audio.resample ---------------------------------------------------------


def _wav_bytes(samples: np.ndarray, sample_rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _tone(seconds: float = 0.1, sample_rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


# What a bad audio file holds, by kind (name -> bytes).
BAD_FILES = {
    "corrupt.wav": lambda: np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes(),
    "text.wav": lambda: b"label,speaker\nangry,03\n" * 20,
    "truncated.wav": lambda: (good := _wav_bytes(_tone()))[: len(good) // 2],
    "empty.wav": lambda: b"",
}


def _write(folder: Path, name: str, content: bytes | None = None) -> Path:
    path = folder / name
    path.write_bytes(BAD_FILES[name]() if content is None else content)
    return path


AUDIO_LOAD_ROWS = [
    row(
        "missing-file",
        lambda tmp: audio.load(tmp / "missing.wav"),
        raises(FileNotFoundError, r"path=.*missing\.wav.*: no such file"),
    ),
    row(  # used to say "no such file"
        "a-folder",
        lambda tmp: audio.load((tmp / "clips.wav").mkdir() or tmp / "clips.wav"),
        raises(IsADirectoryError, r"path=.*clips\.wav.*: a folder, not an audio file"),
    ),
    row(
        "path-none",
        lambda tmp: audio.load(None),
        raises(TypeError, r"path: expected a str or os\.PathLike, got NoneType"),
    ),
    row(
        "corrupt-random-bytes",
        lambda tmp: audio.load(_write(tmp, "corrupt.wav")),
        raises(audio.AudioDecodeError, r"path=.*corrupt\.wav.*: cannot decode", kind="undecodable"),
    ),
    row(
        "text-file",
        lambda tmp: audio.load(_write(tmp, "text.wav")),
        raises(audio.AudioDecodeError, r"path=.*text\.wav.*: cannot decode", kind="undecodable"),
    ),
    row(
        "truncated-wav",
        lambda tmp: audio.load(_write(tmp, "truncated.wav")),
        raises(
            audio.AudioDecodeError,
            r"truncated \(the header declares 3200 bytes of audio, the file holds 1578\)",
            kind="truncated",
        ),
    ),
    row(
        "zero-bytes",
        lambda tmp: audio.load(_write(tmp, "empty.wav")),
        raises(
            audio.AudioDecodeError,
            r"empty\.wav.*: cannot decode \(an empty file\)",
            kind="undecodable",
        ),
    ),
    row(
        "zero-samples",
        lambda tmp: audio.load(_write(tmp, "empty.wav", _wav_bytes(np.zeros(0, np.float32)))),
        raises(audio.AudioDecodeError, r"zero-length audio \(no samples\)", kind="zero-length"),
    ),
    row(
        "inf-samples",
        lambda tmp: audio.load(
            _write(tmp, "empty.wav", _wav_bytes(np.full(8, np.inf, np.float32), subtype="FLOAT"))
        ),
        raises(audio.AudioDecodeError, r"non-finite samples", kind="non-finite samples"),
    ),
    row(
        "sample-rate-zero",
        lambda tmp: audio.load(_write(tmp, "empty.wav", _wav_bytes(_tone())), 0),
        raises(ValueError, r"sample_rate=0: expected a positive integer \(Hz\)"),
    ),
    row(
        "sample-rate-negative",
        lambda tmp: audio.load(_write(tmp, "empty.wav", _wav_bytes(_tone())), -8000),
        raises(ValueError, r"sample_rate=-8000: expected a positive integer \(Hz\)"),
    ),
    row(
        "sample-rate-float",
        lambda tmp: audio.load(_write(tmp, "empty.wav", _wav_bytes(_tone())), 8000.0),
        raises(ValueError, r"sample_rate=8000\.0: expected a positive integer \(Hz\)"),
    ),
    row(
        "sample-rate-bool",
        lambda tmp: audio.load(_write(tmp, "empty.wav", _wav_bytes(_tone())), True),
        raises(ValueError, r"sample_rate=True: expected a positive integer \(Hz\)"),
    ),
]


@pytest.mark.parametrize("call, expect", AUDIO_LOAD_ROWS)
def test_audio_load(tmp_path, call, expect):
    run_row(call, expect, tmp_path)


def only_the_nonfinite_waveform_is_nan(out: torch.Tensor) -> None:
    """A band-limited filter spreads NaN / Inf over its whole waveform, never across rows."""
    assert out.shape == (2, 200) and out[0].isnan().all() and out[1].isfinite().all()


def _resample_with(value: float) -> torch.Tensor:
    x = torch.randn(2, 100)
    x[0, 50] = value
    return audio.resample(x, 8000, 16000)


AUDIO_RESAMPLE_ROWS = [
    row(
        "dtype-int32",
        lambda: audio.resample(torch.zeros(100, dtype=torch.int32), 8000, 16000),
        raises(ValueError, r"waveform: expected a floating tensor, got torch\.int32"),
    ),
    row(
        "dtype-bool",
        lambda: audio.resample(torch.zeros(100, dtype=torch.bool), 8000, 16000),
        raises(ValueError, r"waveform: expected a floating tensor, got torch\.bool"),
    ),
    row(
        "dtype-complex64",
        lambda: audio.resample(torch.zeros(100, dtype=torch.complex64), 8000, 16000),
        raises(ValueError, r"waveform: expected a floating tensor, got torch\.complex64"),
    ),
    row(  # used to be "Cannot copy out of meta tensor; no data!"
        "device-meta",
        lambda: audio.resample(torch.zeros(100, device="meta"), 8000, 16000),
        raises(ValueError, r"waveform: a meta tensor holds no samples to resample"),
    ),
    row(  # used to be an AttributeError
        "not-a-tensor",
        lambda: audio.resample([0.0] * 100, 8000, 16000),
        raises(TypeError, r"waveform: expected a torch\.Tensor, got list"),
    ),
    row(  # used to be an IndexError
        "rank-0",
        lambda: audio.resample(torch.tensor(0.5), 8000, 16000),
        raises(ValueError, r"waveform: expected shape \(\.\.\., time\), got a 0-d tensor"),
    ),
    row(
        "empty-batch",
        lambda: audio.resample(torch.zeros(0, 100), 8000, 16000),
        lambda out: out.shape == (0, 200),
    ),
    row("nan", lambda: _resample_with(NAN), only_the_nonfinite_waveform_is_nan),
    row("inf", lambda: _resample_with(INF), only_the_nonfinite_waveform_is_nan),
    row(
        "huge-1e30",
        lambda: audio.resample(torch.full((400,), HUGE), 8000, 16000),
        lambda out: out.isfinite().all() and 0.5 * HUGE < out.abs().max() < 2 * HUGE,
    ),
    row(
        "orig-rate-negative",
        lambda: audio.resample(torch.zeros(100), -8000, 16000),
        raises(ValueError, r"orig_sample_rate=-8000: expected a positive integer \(Hz\)"),
    ),
    row(
        "new-rate-zero",
        lambda: audio.resample(torch.zeros(100), 8000, 0),
        raises(ValueError, r"new_sample_rate=0: expected a positive integer \(Hz\)"),
    ),
    row(
        "orig-rate-float",
        lambda: audio.resample(torch.zeros(100), 8000.5, 16000),
        raises(ValueError, r"orig_sample_rate=8000\.5: expected a positive integer \(Hz\)"),
    ),
    row(
        "transposed",
        lambda: as_contiguous(lambda x: audio.resample(x, 8000, 16000), torch.randn(100, 2).t()),
        identical,
    ),
    row(
        "expanded",
        lambda: as_contiguous(
            lambda x: audio.resample(x, 8000, 16000), torch.randn(1, 100).expand(3, -1)
        ),
        identical,
    ),
]


@pytest.mark.parametrize("call, expect", AUDIO_RESAMPLE_ROWS)
def test_audio_resample(call, expect):
    run_row(call, expect)


# --- data.load_corpus and data.splits ------------------------------------------------------


def _load(root: Path, name: str = "emodb", **options):
    return load_corpus(name, root, cache=False, progress=False, **options)


def _emodb_with(tmp: Path, bad: str) -> object:
    """A fixture EmoDB tree with one of its utterances replaced by a bad file."""
    root = fx.emodb(tmp / "emodb")
    (root / "wav" / "03a01Wa.wav").write_bytes(BAD_FILES[bad]())
    return _load(root)


def skipped_as(reason: str) -> Callable:
    def check(corpus) -> None:
        skipped = {s.path.name: s.reason for s in corpus.skipped}
        assert skipped.get("03a01Wa.wav") == reason, skipped
        assert len(corpus) == 13 and len(corpus.waveforms) == 13  # the others still load

    check.__doc__ = f"the bad file is skipped as {reason!r}; the rest load"
    return check


LOAD_CORPUS_ROWS = [
    row(
        "unknown-name",
        lambda tmp: load_corpus("emo-db", tmp),
        raises(ValueError, r"name='emo-db': unknown corpus; known: emodb, ravdess, cremad"),
    ),
    row(
        "name-none",
        lambda tmp: load_corpus(None, tmp),
        raises(ValueError, r"name=None: unknown corpus; known: emodb"),
    ),
    row(  # used to be pathlib's "expected str, bytes or os.PathLike object, not NoneType"
        "root-none",
        lambda tmp: load_corpus("emodb", None),
        raises(TypeError, r"root: expected a str or os\.PathLike, got NoneType"),
    ),
    row(
        "root-missing",
        lambda tmp: load_corpus("savee", tmp / "SAVEE"),
        raises(FileNotFoundError, r"root=.*SAVEE.*: no such file or folder \(expected SAVEE"),
    ),
    row(
        "root-empty-folder",
        lambda tmp: load_corpus("tess", tmp),
        raises(CorpusLayoutError, r"does not look like TESS: .*found no audio files"),
    ),
    row(
        "sample-rate-negative",
        lambda tmp: load_corpus("emodb", tmp, sample_rate=-16000),
        raises(ValueError, r"sample_rate=-16000: expected a positive integer \(Hz\)"),
    ),
    row(
        "sample-rate-float",
        lambda tmp: load_corpus("emodb", tmp, sample_rate=16000.0),
        raises(ValueError, r"sample_rate=16000\.0: expected a positive integer \(Hz\)"),
    ),
    row(  # used to mean "the default" silently
        "workers-zero",
        lambda tmp: load_corpus("emodb", tmp, workers=0),
        raises(ValueError, r"workers=0: expected None or an integer >= 1"),
    ),
    row(  # used to be ThreadPoolExecutor's "max_workers must be greater than 0"
        "workers-negative",
        lambda tmp: load_corpus("emodb", tmp, workers=-1),
        raises(ValueError, r"workers=-1: expected None or an integer >= 1"),
    ),
    row(
        "workers-float",
        lambda tmp: load_corpus("emodb", tmp, workers=1.5),
        raises(ValueError, r"workers=1\.5: expected None or an integer >= 1"),
    ),
    row(
        "corrupt-file-in-tree",
        lambda tmp: _emodb_with(tmp, "corrupt.wav"),
        skipped_as("unreadable audio: undecodable"),
    ),
    row(
        "text-file-in-tree",
        lambda tmp: _emodb_with(tmp, "text.wav"),
        skipped_as("unreadable audio: undecodable"),
    ),
    row(
        "truncated-file-in-tree",
        lambda tmp: _emodb_with(tmp, "truncated.wav"),
        skipped_as("unreadable audio: truncated"),
    ),
    row(
        "zero-byte-file-in-tree",
        lambda tmp: _emodb_with(tmp, "empty.wav"),
        skipped_as("unreadable audio: undecodable"),
    ),
]


@pytest.mark.parametrize("call, expect", LOAD_CORPUS_ROWS)
def test_load_corpus(tmp_path, call, expect):
    run_row(call, expect, tmp_path)


def _emodb_corpus(tmp: Path):
    return load_corpus("emodb", fx.emodb(tmp / "emodb"), load_audio=False)


SPLITS_ROWS = [
    row(
        "unknown-protocol",
        lambda tmp: splits(_emodb_corpus(tmp), "leave_one_out"),
        raises(ValueError, r"protocol='leave_one_out': expected one of loso, speaker_kfold, "),
    ),
    row(
        "protocol-none",
        lambda tmp: splits(_emodb_corpus(tmp), None),
        raises(ValueError, r"protocol=None: expected one of loso"),
    ),
    row(
        "k-float",
        lambda tmp: splits(_emodb_corpus(tmp), "random", k=2.5),
        raises(ValueError, r"k=2\.5: expected an integer >= 2"),
    ),
    row(
        "k-bool",
        lambda tmp: splits(_emodb_corpus(tmp), "random", k=True),
        raises(ValueError, r"k=True: expected an integer >= 2"),
    ),
    row(
        "k-more-than-speakers",
        lambda tmp: splits(_emodb_corpus(tmp), "speaker_kfold", k=3),
        raises(ValueError, r"k=3: speaker_kfold needs at least k speakers, found 2"),
    ),
    row(  # used to be an AttributeError on .utterances
        "corpus-none",
        lambda tmp: splits(None),
        raises(TypeError, r"corpus: expected a Corpus .*, got NoneType"),
    ),
    row(
        "corpus-a-list",
        lambda tmp: splits(list(_emodb_corpus(tmp))),
        raises(TypeError, r"corpus: expected a Corpus .*, got list"),
    ),
    row(  # used to be torch's "manual_seed expected a long, but got str"
        "seed-str",
        lambda tmp: splits(_emodb_corpus(tmp), "random", seed="0"),
        raises(ValueError, r"seed='0': expected an integer"),
    ),
]


@pytest.mark.parametrize("call, expect", SPLITS_ROWS)
def test_splits(tmp_path, call, expect):
    run_row(call, expect, tmp_path)


# --- Report.from_predictions ---------------------------------------------------------------

LABELS = ("angry", "happy", "sad")


REPORT_ROWS = [
    row(
        "length-mismatch",
        lambda: Report.from_predictions([0, 1, 2], [0, 1], LABELS),
        raises(ValueError, r"y_true and y_pred differ in length: 3 vs 2"),
    ),
    row(
        "empty-tensors",
        lambda: Report.from_predictions(torch.zeros(0), torch.zeros(0), LABELS),
        raises(ValueError, r"y_true: expected at least one example, got none"),
    ),
    row(
        "class-too-large",
        lambda: Report.from_predictions([0, 1], [0, 5], LABELS),
        raises(ValueError, r"y_pred: class indices must be in \[0, 3\), got \[0, 5\]"),
    ),
    row(
        "class-negative",
        lambda: Report.from_predictions([-2, 1], [0, 1], LABELS),
        raises(ValueError, r"y_true: class indices must be in \[0, 3\), got \[-2, 1\]"),
    ),
    row(
        "strided",
        lambda: (
            Report.from_predictions(
                torch.tensor([0, 9, 1, 9, 2, 9])[::2], [0, 2, 2], LABELS
            ).confusion,
            Report.from_predictions(torch.tensor([0, 1, 2]), [0, 2, 2], LABELS).confusion,
        ),
        lambda pair: pair[0] == pair[1],
    ),
    row(
        "float-predictions",
        lambda: Report.from_predictions([0, 1], [0.4, 1.6], LABELS),
        raises(ValueError, r"y_pred"),
    ),
    row(
        "logits-as-predictions",
        lambda: Report.from_predictions([0, 1], torch.randn(2, 3), LABELS),
        raises(ValueError, r"y_pred.*\(2, 3\)"),
    ),
    row(
        "nan-label",
        lambda: Report.from_predictions([NAN, 1.0], [0, 1], LABELS),
        raises(ValueError, r"y_true: expected integer class indices, got torch.float"),
    ),
    row(
        "device-meta",
        lambda: Report.from_predictions(
            torch.zeros(2, dtype=torch.long, device="meta"), [0, 1], LABELS
        ),
        raises(ValueError, r"y_true: a meta tensor holds no values"),
    ),
]


@pytest.mark.parametrize("call, expect", REPORT_ROWS)
def test_report_from_predictions(call, expect):
    run_row(call, expect)


# --- the CLI -------------------------------------------------------------------------------

CLI_ROWS = [
    row("unknown-command", lambda: cli_main(["frobnicate"]), raises(SystemExit, r"^2$", code=2)),
    row("no-command", lambda: cli_main([]), raises(SystemExit, r"^2$", code=2)),
    row(
        "unknown-option", lambda: cli_main(["info", "--bogus"]), raises(SystemExit, r"^2$", code=2)
    ),
]


@pytest.mark.parametrize("call, expect", CLI_ROWS)
def test_cli(capsys, call, expect):
    run_row(call, expect)
    assert "usage: emohrnet-fast" in capsys.readouterr().err
