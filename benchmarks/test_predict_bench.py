"""Inference latency: one 2-s clip through ``Predictor`` (waveform in, ranked labels out) beside
the eager pipeline a user would write around the same weights (``torch.stft`` + Mel matmul + dB,
the model with the eager fuse, softmax), for the bundled model and EmoHRNet-small. The table's
throughput is audio seconds per second: its inverse is the real-time factor.
"""

from __future__ import annotations

import pytest
import torch
from ef_testing import DEVICES

from emohrnet_fast import load_model, models
from emohrnet_fast.infer import Predictor
from emohrnet_fast.ops import reference

CLIP_SECONDS = 2.0


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
@pytest.mark.parametrize("impl", ["Predictor", "eager"])
def test_single_clip_latency(timer, device, name, impl):
    model, eager = _models(name, device)
    rate = model.default_frontend.sample_rate
    clip = torch.randn(int(CLIP_SECONDS * rate), device=device) * 0.1
    if impl == "Predictor":
        predictor = Predictor(model, device=device)

        def run():
            predictor(clip, rate)
    else:
        frontend = model.default_frontend

        def run():
            with torch.inference_mode():
                features = reference.log_mel(clip[None], frontend, check=False)
                eager(features.unsqueeze(1)).logits.softmax(dim=-1).cpu()

    for _ in range(3):
        run()
    timer(
        run,
        workload=f"predict 1 x {CLIP_SECONDS:g}-s clip, {name}",
        impl=impl if impl == "Predictor" else "eager (torch.stft + matmul + model)",
        audio_seconds=CLIP_SECONDS,
        baseline=impl == "eager",
        repeat=5,
    )
