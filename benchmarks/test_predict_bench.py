"""Inference latency: one 2-s clip through ``Predictor`` (waveform in, ranked labels out) beside
the eager pipeline a user would write around the same weights (``torch.stft`` + Mel matmul + dB,
the model with the eager fuse, softmax), for the bundled model and EmoHRNet-small, and on the
CPU beside ONNX Runtime running the model's ``export_onnx`` graph (the deployment a user may pick
instead of this package). ``Predictor(compile=True)`` rows are timed after their compilation
(the warm-up calls pay it). The table's throughput is audio seconds per second: its inverse is
the real-time factor.
"""

from __future__ import annotations

import pytest
import torch
from ef_testing import DEVICES, torchaudio_frontend

from emohrnet_fast import export_onnx, load_model, models
from emohrnet_fast.infer import Predictor
from emohrnet_fast.ops import reference

CLIP_SECONDS = 2.0
# fp32 beside the fp32 eager baseline; bf16 ("auto" on CUDA) and torch.compile as labelled rows.
PREDICTOR_ROWS = ["Predictor", "Predictor bf16", "Predictor compiled", "Predictor compiled bf16"]


def _onnx_runner(model, tmp_path):
    """ONNX Runtime over ``export_onnx``'s graph of ``model``: waveforms in, probabilities out."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(tmp_path / "model.onnx", model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda waveforms: session.run(["probabilities"], {"waveform": waveforms.numpy()})


def _models(name: str, device: str):
    """(model for Predictor, the same weights for the eager pipeline)."""
    if name == "default":
        model = load_model("default", device=device)
        return model, model  # no fuse layers: the same module either way
    torch.manual_seed(0)
    model = models.create(name, num_classes=7)
    model.labels = tuple(f"class{i}" for i in range(7))
    eager = models.create(name, num_classes=7, fuse="reference")
    eager.load_state_dict(model.state_dict())
    return model.to(device).eval(), eager.to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["default", "emohrnet_small"])
@pytest.mark.parametrize("impl", [*PREDICTOR_ROWS, "eager", "onnxruntime"])
def test_single_clip_latency(timer, tmp_path, device, name, impl):
    if impl == "onnxruntime" and device != "cpu":
        pytest.skip("ONNX Runtime rows: CPU only (its CUDA build is not installed)")
    model, eager = _models(name, device)
    rate = model.default_frontend.sample_rate
    clip = torch.randn(int(CLIP_SECONDS * rate), device=device) * 0.1
    if impl == "onnxruntime":
        session = _onnx_runner(model, tmp_path)
        label = "onnxruntime fp32 (export_onnx graph)"

        def run():
            session(clip[None])
    elif impl.startswith("Predictor"):
        predictor = _predictor(impl, model, device)
        compiled = ", compiled" if predictor.compile else ""
        label = f"Predictor ({predictor.precision}{compiled})"

        def run():
            predictor(clip, rate)
    else:
        features_of, name_of_features = _eager_features(model.default_frontend, device)
        label = f"eager fp32 ({name_of_features} + model)"

        def run():
            with torch.inference_mode():
                features = features_of(clip[None])
                eager(features.unsqueeze(1)).logits.softmax(dim=-1).cpu()

    for _ in range(3):
        run()
    timer(
        run,
        workload=f"predict 1 x {CLIP_SECONDS:g}-s clip, {name}",
        impl=label,
        audio_seconds=CLIP_SECONDS,
        baseline=impl == "eager",
        repeat=5,
    )


def _predictor(impl: str, model, device: str, **kwargs) -> Predictor:
    """The Predictor a ``PREDICTOR_ROWS`` entry names."""
    precision = "bf16" if impl.endswith("bf16") else "fp32"
    return Predictor(
        model, device=device, precision=precision, compile="compiled" in impl, **kwargs
    )


def _eager_features(config, device: str):
    """The front-end a user would write instead: torchaudio where it is installed (the CUDA
    machine), else ``torch.stft`` + Mel matmul + dB (+ DCT), our pure-PyTorch reference."""
    return torchaudio_frontend(config, device) or (
        (lambda wave: reference.log_mel(wave, config, check=False)),
        "torch.stft + matmul",
    )


BATCH = 256


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["default", "emohrnet_small"])
@pytest.mark.parametrize("impl", [*PREDICTOR_ROWS, "eager", "onnxruntime"])
def test_batch_throughput(timer, tmp_path, device, name, impl):
    """B=256 2-s clips, waveform in, probabilities out (the issue's H100 throughput bar)."""
    if device == "cpu" and name != "default":
        pytest.skip("CPU: the bundled model only (EmoHRNet B=256 takes minutes)")
    if impl == "onnxruntime" and device != "cpu":
        pytest.skip("ONNX Runtime rows: CPU only (its CUDA build is not installed)")
    model, eager = _models(name, device)
    rate = model.default_frontend.sample_rate
    batch = torch.randn(BATCH, int(CLIP_SECONDS * rate), device=device) * 0.1
    if impl == "onnxruntime":
        session = _onnx_runner(model, tmp_path)
        label = "onnxruntime fp32 (export_onnx graph)"

        def run():
            session(batch)
    elif impl.startswith("Predictor"):
        predictor = _predictor(impl, model, device, batch_size=BATCH)

        def run():
            predictor.probabilities(batch, rate)

        label = impl + (" (CUDA graph)" if predictor.cuda_graphs else "")
    else:
        features, frontend = _eager_features(model.default_frontend, device)

        def run():
            with torch.inference_mode():
                eager(features(batch).unsqueeze(1)).logits.softmax(dim=-1).cpu()

        label = f"eager ({frontend} + model)"
    for _ in range(2):  # the second call captures the CUDA graph (and compiles)
        run()
    timer(
        run,
        workload=f"predict {BATCH} x {CLIP_SECONDS:g}-s clips, {name}",
        impl=label,
        audio_seconds=BATCH * CLIP_SECONDS,
        clips=BATCH,
        baseline=impl == "eager",
        rounds=3,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["default", "emohrnet_small"])
@pytest.mark.parametrize("impl", ["Predictor.timeline", "Predictor.timeline compiled", "eager"])
def test_timeline_one_hour(timer, request, device, name, impl):
    """Emotion timeline over one hour of audio (2-s windows, 0.5-s hop: 7 197 windows); one
    minute in the smoke run (``--benchmark-disable``)."""
    if device == "cpu" and name != "default":
        pytest.skip("CPU: the bundled model only (EmoHRNet over an hour takes many minutes)")
    smoke = request.config.getoption("benchmark_disable")
    seconds = 60.0 if smoke else 3600.0
    model, eager = _models(name, device)
    rate = model.default_frontend.sample_rate
    audio = torch.randn(int(seconds * rate), device=device) * 0.1
    window, hop = int(2.0 * rate), int(0.5 * rate)
    if impl.startswith("Predictor.timeline"):
        # fp32 like the eager baseline (precision "auto" would be bf16 on CUDA).
        predictor = _predictor(impl, model, device)

        def run():
            predictor.timeline(audio, rate, window_s=2.0, hop_s=0.5)

        label = f"Predictor.timeline (fp32{', compiled' if predictor.compile else ''})"
    else:
        features, frontend = _eager_features(model.default_frontend, device)

        def run():  # the same windows, batched by 64, what a user would write around the model
            with torch.inference_mode():
                windows = audio.unfold(0, window, hop)
                out = [
                    eager(features(chunk).unsqueeze(1)).logits.softmax(dim=-1).cpu()
                    for chunk in windows.split(64)
                ]
                torch.cat(out)

        label = f"eager windows, batches of 64 ({frontend} + model)"

    # The timer's warm-up round sees the last, partial batch's shape once; this call makes it
    # a second sighting, so its CUDA graph is captured (and its graph compiled) before the
    # timed round, not in it.
    run()
    timer(
        run,
        workload=f"timeline over {seconds / 60:g} min of audio, {name}",
        impl=label,
        audio_seconds=seconds,
        baseline=impl == "eager",
        rounds=1,
    )
