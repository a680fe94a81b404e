"""SpecAugment: kernel vs reference for the same drawn masks, the module's sampling, the mask
fused into the front-end, autograd and bad input."""

from __future__ import annotations

import pytest
import torch
from ef_testing import DEVICES, HAS_CUDA

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import MaskParams, log_mel, reference, spec_augment, spec_augment_
from emohrnet_fast.ops.spec_augment import _spec_augment_inplace_op, _spec_augment_op


def masks_from(freq, time, values, device="cpu") -> MaskParams:
    return MaskParams(
        torch.tensor(freq, dtype=torch.int32, device=device).reshape(len(values), -1, 2),
        torch.tensor(time, dtype=torch.int32, device=device).reshape(len(values), -1, 2),
        torch.tensor(values, dtype=torch.float32, device=device),
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape",
    [(1, 128, 401), (3, 1, 128, 401), (17, 2, 40, 13), (2, 5, 7), (1, 1, 1, 1)],
    ids=str,
)
def test_kernel_matches_reference_for_drawn_masks(device, shape):
    spec = torch.randn(shape, device=device)
    aug = SpecAugment(freq_masks=3, freq_width=20, time_masks=2, time_width=0.3, mask_value=-1.5)
    masks = aug.draw(shape[0], shape[-2], shape[-1], device)
    out = spec_augment(spec, masks)
    torch.testing.assert_close(out, reference.spec_augment(spec, masks), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_edge_ranges(device):
    """Start 0, end T, width 0, the whole axis, ranges outside the axis, overlaps."""
    spec = torch.randn(5, 1, 8, 11, device=device)
    masks = masks_from(
        freq=[
            [[0, 1], [7, 8]],
            [[0, 0], [3, 3]],
            [[0, 8], [2, 2]],
            [[-5, 2], [6, 40]],
            [[9, 12], [2, 2]],
        ],
        time=[
            [[0, 0], [10, 11]],
            [[0, 11], [5, 5]],
            [[4, 6], [3, 7]],
            [[-3, -1], [11, 20]],
            [[0, 1], [5, 4]],
        ],
        values=[1.0, 2.0, 3.0, 4.0, 5.0],
        device=device,
    )
    out = spec_augment(spec, masks)
    torch.testing.assert_close(out, reference.spec_augment(spec, masks), rtol=0, atol=0)
    assert torch.all(out[0, 0, [0, 7]] == 1.0) and torch.all(out[0, 0, :, 10] == 1.0)
    torch.testing.assert_close(out[0, 0, 1:7, :10], spec[0, 0, 1:7, :10])
    assert torch.all(out[1] == 2.0)  # the whole time axis
    assert torch.all(out[2] == 3.0)  # the whole feature axis
    assert torch.all(out[3, 0, [0, 1, 6, 7]] == 4.0)  # ranges clipped by the axis
    torch.testing.assert_close(out[3, 0, 2:6], spec[3, 0, 2:6])  # time ranges outside: no-op
    assert torch.all(out[4, 0, :, 0] == 5.0)  # only column 0; reversed range is empty
    torch.testing.assert_close(out[4, 0, :, 1:], spec[4, 0, :, 1:])


@pytest.mark.parametrize("device", DEVICES)
def test_no_masks_and_zero_widths_copy_the_input(device):
    spec = torch.randn(2, 16, 9, device=device)
    empty = MaskParams(
        torch.zeros(2, 0, 2, dtype=torch.int32, device=device),
        torch.zeros(2, 0, 2, dtype=torch.int32, device=device),
        torch.zeros(2, device=device),
    )
    torch.testing.assert_close(spec_augment(spec, empty), spec, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_is_grad_times_mask(device):
    spec = torch.randn(3, 1, 20, 30, device=device, requires_grad=True)
    masks = SpecAugment(time_width=10).draw(3, 20, 30, device)
    weights = torch.randn(3, 1, 20, 30, device=device)
    (spec_augment(spec, masks) * weights).sum().backward()
    ours = spec.grad.clone()
    spec.grad = None
    (reference.spec_augment(spec, masks) * weights).sum().backward()
    torch.testing.assert_close(ours, spec.grad, rtol=0, atol=0)


def test_spec_augment_draws_float32_masks_whatever_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        module = SpecAugment().train()
        features = torch.randn(2, 40, 50, dtype=torch.float32)
        masks = module.draw(2, 40, 50, generator=torch.Generator().manual_seed(0))
        assert masks.values.dtype == torch.float32
        assert module(features, generator=torch.Generator().manual_seed(0)).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)
    again = SpecAugment().draw(2, 40, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks.freq, again.freq) and torch.equal(masks.time, again.time)


def test_second_derivatives():
    """The backward is the same linear op through autograd, so create_graph=True works."""
    masks = SpecAugment(time_width=4).draw(2, 6, 8, generator=torch.Generator().manual_seed(1))
    spec = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    results = []
    for op in (spec_augment, reference.spec_augment):
        (grad,) = torch.autograd.grad(
            op((spec * weight).float(), masks).square().sum(), spec, create_graph=True
        )
        results.append(torch.autograd.grad(grad.square().sum(), weight)[0])
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("device", DEVICES)
def test_nan_passes_through_outside_masks(device):
    spec = torch.full((1, 4, 6), float("nan"), device=device)
    out = spec_augment(spec, masks_from([[1, 2]], [[3, 4]], [0.0], device))
    assert torch.isnan(out[0, 0, :3]).all() and (out[0, 1] == 0).all() and (out[0, :, 3] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(top_db=None),
        dict(n_mfcc=20),
        dict(n_mfcc=13, top_db=None),
        dict(n_mels=None, output="log"),
    ],
    ids=["db-top_db", "db", "mfcc-top_db", "mfcc", "linear-log"],
)
def test_fused_into_log_mel_equals_separate_pass(device, options):
    """Masked features never enter the top_db clamp or its maximum (-500 dB is far below
    every floor, so a clamped mask value would show)."""
    config = FrontEndConfig(n_fft=400, **{"n_mels": 64, **options})
    x = torch.randn(2, 3, 8000, device=device)
    x[1, 2] *= 1e-4  # a quiet clip whose floor the mask value would otherwise interact with
    frames = config.num_frames(8000)
    masks = SpecAugment(freq_width=10, time_width=15, mask_value=-500.0).draw(
        6, config.n_features, frames, device
    )
    fused = log_mel(x, config, augment=masks)
    separate = spec_augment(log_mel(x, config).reshape(6, config.n_features, frames), masks)
    torch.testing.assert_close(fused, separate.reshape(fused.shape), rtol=0, atol=0)


def test_module_is_identity_in_eval_and_reproducible_in_train():
    aug = SpecAugment()
    spec = torch.randn(4, 1, 128, 401)
    assert aug.eval()(spec) is spec
    aug.train()
    torch.manual_seed(5)
    first = aug(spec)
    torch.manual_seed(5)
    torch.testing.assert_close(aug(spec), first, rtol=0, atol=0)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    torch.testing.assert_close(aug(spec, generator=g1), aug(spec, generator=g2), rtol=0, atol=0)
    assert not torch.equal(first, spec)


def test_sampling_follows_the_documented_distributions():
    aug = SpecAugment(freq_masks=1, freq_width=10, time_masks=1, time_width=0.25)
    masks = aug.draw(20000, 30, 80, generator=torch.Generator().manual_seed(0))
    widths = masks.freq[..., 1] - masks.freq[..., 0]
    assert widths.min() == 0 and widths.max() == 10
    counts = torch.bincount(widths.flatten(), minlength=11).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1, counts  # uniform on {0..10}
    assert masks.freq[..., 0].min() == 0 and masks.freq[..., 1].max() == 30
    time_widths = masks.time[..., 1] - masks.time[..., 0]
    assert time_widths.max() == 20  # int(0.25 * 80)
    starts = masks.time[..., 0][time_widths == 0].float()
    assert starts.max() == 80 and abs(starts.mean().item() - 40) < 1.5  # uniform over 0..80


def test_widths_larger_than_the_axis_are_clamped_and_p_skips_examples():
    masks = SpecAugment(freq_width=500, time_width=900).draw(50, 16, 20)
    assert (masks.freq[..., 0] >= 0).all() and (masks.freq[..., 1] <= 16).all()
    assert (masks.time[..., 1] <= 20).all()
    skipped = SpecAugment(p=0.0).draw(10, 16, 20)
    assert (skipped.freq == 0).all() and (skipped.time == 0).all()
    half = SpecAugment(p=0.5, freq_width=8).draw(4000, 16, 20)
    masked = (
        (
            (half.freq[..., 1] > half.freq[..., 0]).any(1)
            | (half.time[..., 1] > half.time[..., 0]).any(1)
        )
        .float()
        .mean()
    )
    assert 0.42 < masked < 0.52


def test_mean_mask_value():
    spec = torch.randn(3, 1, 10, 12) + torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1)
    aug = SpecAugment(mask_value="mean").train()
    torch.manual_seed(0)
    out = aug(spec)
    torch.manual_seed(0)
    masks = aug.draw(3, 10, 12, features_for_mean=spec)
    torch.testing.assert_close(masks.values, spec.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out, reference.spec_augment(spec, masks), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"mask_value='mean'\) needs the features"):
        aug.draw(3, 10, 12)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    spec = torch.randn(2, 1, 16, 21, device=device)
    masks = SpecAugment(time_width=5).draw(2, 16, 21, device)
    torch.library.opcheck(_spec_augment_op, (spec, masks.freq, masks.time, masks.values))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    aug = SpecAugment(time_width=5)
    masks = aug.draw(2, 16, 21)

    def pipeline(x):
        return spec_augment(x * 2.0, masks) + 1.0

    x = torch.randn(2, 16, 21)
    torch.testing.assert_close(torch.compile(pipeline, fullgraph=True)(x), pipeline(x))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(freq_masks=-1), r"SpecAugment freq_masks=-1: expected an integer >= 0"),
        (dict(freq_width=-3), r"SpecAugment freq_width=-3: expected an integer >= 0"),
        (dict(time_masks=1.5), r"SpecAugment time_masks=1.5: expected an integer >= 0"),
        (dict(time_width=-2), r"SpecAugment time_width=-2: expected an integer >= 0 \(frames\)"),
        (dict(time_width=1.5), r"SpecAugment time_width=1.5: expected .* a fraction in \[0, 1\]"),
        (dict(mask_value="median"), r"SpecAugment mask_value='median': expected a finite number"),
        (dict(mask_value=float("nan")), r"SpecAugment mask_value=nan: expected a finite number"),
        (dict(p=1.5), r"SpecAugment p=1.5: expected a probability in \[0, 1\]"),
    ],
)
def test_invalid_module_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SpecAugment(**kwargs)


def test_bad_spec_and_masks_are_rejected():
    masks = SpecAugment().draw(2, 16, 20)
    with pytest.raises(TypeError, match=r"spec: expected float32 features, got torch\.int64"):
        spec_augment(torch.zeros(2, 16, 20, dtype=torch.long), masks)
    with pytest.raises(
        ValueError, match=r"spec: expected shape \(B, \[C,\] F, T\), got \(16, 20\)"
    ):
        spec_augment(torch.zeros(16, 20), masks)
    with pytest.raises(ValueError, match=r"spec: expected non-empty features"):
        spec_augment(torch.zeros(2, 0, 20), masks)
    with pytest.raises(
        ValueError, match=r"masks\.freq: expected shape \(3, n, 2\), got \(2, 2, 2\)"
    ):
        spec_augment(torch.zeros(3, 16, 20), masks)
    with pytest.raises(TypeError, match=r"masks\.time: expected torch\.int32, got torch\.int64"):
        spec_augment(
            torch.zeros(2, 16, 20), MaskParams(masks.freq, masks.time.long(), masks.values)
        )
    with pytest.raises(ValueError, match=r"masks\.values is on meta but the input is on cpu"):
        spec_augment(
            torch.zeros(2, 16, 20), MaskParams(masks.freq, masks.time, masks.values.to("meta"))
        )
    with pytest.raises(TypeError, match=r"masks: expected MaskParams, got dict"):
        spec_augment(torch.zeros(2, 16, 20), {"freq": masks.freq})
    with pytest.raises(ValueError, match=r"SpecAugment: expected \(B, \[C,\] F, T\) features"):
        SpecAugment().train()(torch.zeros(16, 20))
    with pytest.raises(
        ValueError, match=r"augment\.freq: expected shape \(3, n, 2\), got \(2, 2, 2\)"
    ):
        log_mel(torch.randn(3, 4000), augment=masks)
    with pytest.raises(TypeError, match=r"augment: expected MaskParams, got tuple"):
        log_mel(torch.randn(2, 4000), augment=(masks.freq, masks.time, masks.values))


@pytest.mark.parametrize("device", DEVICES)
def test_in_place_variant(device):
    spec = torch.randn(3, 1, 40, 50, device=device)
    masks = SpecAugment(time_width=12).draw(3, 40, 50, device)
    expected = reference.spec_augment(spec, masks)
    assert spec_augment_(spec, masks) is spec
    torch.testing.assert_close(spec, expected, rtol=0, atol=0)
    torch.library.opcheck(_spec_augment_inplace_op, (spec, masks.freq, masks.time, masks.values))
    with pytest.raises(ValueError, match=r"in-place spec_augment_ needs a contiguous tensor"):
        spec_augment_(spec.transpose(-1, -2), SpecAugment().draw(3, 50, 40, device))
    with pytest.raises(RuntimeError, match=r"spec_augment_ is not differentiable"):
        spec_augment_(spec.clone().requires_grad_(), masks)


@pytest.mark.parametrize("device", DEVICES)
def test_front_end_module_takes_masks(device):
    from emohrnet_fast.features import LogMel

    module = LogMel(n_mels=40).to(device)
    x = torch.randn(4, 16000, device=device)
    masks = SpecAugment().draw(4, 40, 101, device)
    torch.testing.assert_close(module(x, augment=masks), spec_augment(module(x), masks))


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_rows_beyond_the_grid_y_limit():
    spec = torch.randn(600, 1, 128, 10, device="cuda")  # 76 800 rows > 65 535
    masks = SpecAugment(time_width=3).draw(600, 128, 10, "cuda")
    torch.testing.assert_close(
        spec_augment(spec, masks), reference.spec_augment(spec, masks), rtol=0, atol=0
    )
