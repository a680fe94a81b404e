"""EmoHRNet: shapes for any frame count, kernel fuse = eager fuse, parameter counts, timm
architecture reference (where timm is installed), EmoDB overfit, compile, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ef_testing import DEVICES, HAS_CUDA, emodb_files, load_wav, timm_reference

from emohrnet_fast import models
from emohrnet_fast.features import FrontEnd

# Backbone parameters (everything but our classifier) with in_chans=1: timm's hrnet_w18_small /
# hrnet_w18 / hrnet_w32 minus their 1000-class classifier (2 049 000) and minus the 1 152 stem
# weights that 3 input channels add.
BACKBONE_PARAMS = {
    "emohrnet_small": 11_137_312,
    "emohrnet_w18": 19_248_852,
    "emohrnet_w32": 39_182_528,
}


def backbone_params(model) -> int:
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if not n.startswith(("hidden.", "classifier."))
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frames", [33, 100, 401])
def test_shapes_for_any_frame_count(device, frames):
    model = models.create("emohrnet_small", num_classes=7).to(device).eval()
    out = model(torch.randn(2, 128, frames, device=device))
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 256)
    assert out.reconstruction is None


@pytest.mark.parametrize("name", ["emohrnet_compact", "emohrnet_w18", "emohrnet_w32"])
def test_other_presets_run_on_odd_sizes(name):
    model = models.create(name, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 101)).logits.shape == (1, 4)


def test_compact_preset_fits_the_bundled_model_budget():
    model = models.create("emohrnet_compact", num_classes=7)
    weights = sum(t.numel() for t in model.state_dict().values())
    assert weights * 2 <= 10 * 2**20  # <= 10 MB stored in 16 bits (emohrnet-fast export)
    assert model.embedding_dim == 128


def test_parameter_counts_match_the_hrnet_presets():
    for name, expected in BACKBONE_PARAMS.items():
        model = models.create(name, num_classes=4)
        assert backbone_params(model) == expected, name
    assert set(BACKBONE_PARAMS) <= set(models.list_models())


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_fuse_equals_reference_fuse(device):
    torch.manual_seed(0)
    kernel = models.create("emohrnet_small", num_classes=5, dropout=0.0).to(device)
    eager = models.create("emohrnet_small", num_classes=5, dropout=0.0, fuse="reference")
    eager = eager.to(device)
    eager.load_state_dict(kernel.state_dict())
    x = torch.randn(3, 96, 77, device=device)
    labels = torch.tensor([0, 3, 4], device=device)
    outputs = []
    # The two backward passes differ only in the fuse's summation order (1 ulp); TF32
    # convolutions (cuDNN's default on Ampere and later) and nondeterministic cuDNN algorithms
    # would amplify that past rtol=1e-4 by the stem (conv1.weight on an H200, 2026-12-04).
    with torch.backends.cudnn.flags(
        enabled=True, benchmark=False, deterministic=True, allow_tf32=False
    ):
        for model in (kernel, eager):
            model.train()
            out = model(x)
            F.cross_entropy(out.logits, labels).backward()
            outputs.append((out.logits, {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=1e-5, atol=1e-5)
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(
            grad, outputs[1][1][name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_channels_last_matches_contiguous():
    model = models.create("emohrnet_small", num_classes=3).eval()
    x = torch.randn(2, 1, 64, 45)
    with torch.no_grad():
        expected = model(x).logits
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bad_input_is_rejected():
    model = models.create("emohrnet_small", num_classes=4)
    with pytest.raises(ValueError, match=r"EmoHRNet: expected features \(B, F, T\) or"):
        model(torch.randn(128, 401))
    with pytest.raises(ValueError, match=r"EmoHRNet: expected 1 input channel\(s\), got 2"):
        model(torch.randn(1, 2, 128, 401))
    with pytest.raises(ValueError, match=r"features of 16 bins x 401 frames are too small"):
        model(torch.randn(1, 16, 401))
    with pytest.raises(ValueError, match=r"num_classes=1: expected an integer >= 2"):
        models.create("emohrnet_small", num_classes=1)
    with pytest.raises(ValueError, match=r"EmoHRNetConfig.fuse='triton': expected"):
        models.create("emohrnet_small", num_classes=4, fuse="triton")


def test_overfits_a_tiny_emodb_batch():
    files = emodb_files(8)
    clips = torch.stack([load_wav(path)[0] for path in files])
    letters = [path.stem[5] for path in files]
    classes = sorted(set(letters))
    labels = torch.tensor([classes.index(c) for c in letters])
    torch.manual_seed(0)
    model = models.create("emohrnet_small", num_classes=len(classes), dropout=0.0)
    # 64 Mel bands, 20-ms hop, 64 frames: the smallest input the network takes, fast on 2 cores.
    frontend = FrontEnd(
        model.default_frontend.replace(sample_rate=22050, hop_length=441, n_fft=1024, n_mels=64)
    )
    features = frontend(clips)[..., 10:74]
    features = (features - features.mean()) / features.std()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        loss = F.cross_entropy(model(features).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Training accuracy, with batch statistics: after 20 steps on one batch of 8 the BatchNorm
    # running averages still lag (eval-mode accuracy catches up only with more steps).
    with torch.no_grad():
        accuracy = (model(features).logits.argmax(1) == labels).float().mean().item()
    assert accuracy == 1.0 and loss.item() < 0.01, (accuracy, loss.item())


@pytest.mark.slow
def test_torch_compile_fullgraph():
    model = models.create("emohrnet_small", num_classes=4).eval()
    x = torch.randn(2, 64, 101)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fuse", ["kernel", "reference"])
def test_torch_export_keeps_batch_and_frames_dynamic(fuse):
    """One export serves every clip length: the fuse's size checks add no shape guards (the
    33-frame minimum is PyTorch's own guard: the lowest branch's width must not be 1)."""
    torch.manual_seed(0)
    model = models.create("emohrnet_compact", num_classes=4, fuse=fuse).eval()
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames", min=33, max=4000)
    exported = torch.export.export(
        model, (torch.randn(2, 1, 64, 101),), dynamic_shapes=({0: batch, 3: frames},)
    )
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert ("emohrnet_fast.hr_fuse.default" in targets) == (fuse == "kernel")
    for shape in [(3, 1, 64, 401), (1, 1, 64, 33), (2, 1, 64, 77)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(x).logits, model(x).logits)


@pytest.mark.parametrize(
    "preset,timm_name",
    [
        ("emohrnet_small", "hrnet_w18_small"),
        ("emohrnet_w18", "hrnet_w18"),
        ("emohrnet_w32", "hrnet_w32"),
    ],
)
def test_architecture_matches_timm_hrnet(preset, timm_name):
    """Weights copied from timm by name give the same pooled features (timm: GPU machine, or a
    CPU venv with torchvision)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm_reference(timm, timm_name, in_chans=1)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier")}
    ours_by_fuse = {}
    for fuse in ("kernel", "reference"):
        ours = models.create(preset, num_classes=4, fuse=fuse).eval()
        missing, unexpected = ours.load_state_dict(state, strict=False)
        assert not unexpected and {k.split(".")[0] for k in missing} == {
            "input_norm",
            "hidden",
            "classifier",
        }
        ours_by_fuse[fuse] = ours
    timm_backbone = sum(
        p.numel() for n, p in reference.named_parameters() if not n.startswith("classifier")
    )
    assert backbone_params(ours_by_fuse["kernel"]) == timm_backbone == BACKBONE_PARAMS[preset]
    x = torch.randn(2, 1, 128, 384)  # timm upsamples by factors: sizes must be multiples of 32
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        assert 0.01 < expected.abs().max() < 100  # the check above worked: O(1) activations
        for fuse, ours in ours_by_fuse.items():
            torch.testing.assert_close(
                ours.forward_features(x),
                expected,
                rtol=1e-4,
                atol=1e-4,
                msg=lambda m, fuse=fuse: f"fuse={fuse}: {m}",
            )


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["emohrnet_small", "centerloss_cnn_mfcc"])
def test_cuda_bf16_channels_last_and_graph_capture(name):
    model = models.create(name, num_classes=4).cuda().eval()
    frontend = model.default_frontend
    x = torch.randn(8, frontend.n_features, 101, device="cuda")
    with torch.inference_mode():
        expected = model(x).logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(x).logits
        assert (bf16.float() - expected).abs().max() < 0.1 * expected.abs().max() + 0.1
        cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(
            cl(x.unsqueeze(1).to(memory_format=torch.channels_last)).logits,
            expected,
            rtol=1e-3,
            atol=1e-3,
        )
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = model(static_x).logits
    fresh = torch.randn_like(x)
    static_x.copy_(fresh)
    graph.replay()
    with torch.no_grad():
        torch.testing.assert_close(static_out, model(fresh).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_compile_fullgraph_and_reduce_overhead():
    model = models.create("emohrnet_small", num_classes=4).cuda().eval()
    x = torch.randn(4, 128, 401, device="cuda")
    with torch.no_grad():
        expected = model(x).logits
        for mode in ("default", "reduce-overhead"):
            compiled = torch.compile(model, fullgraph=True, mode=mode)
            for _ in range(3):
                got = compiled(x).logits
            torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3, msg=mode)
