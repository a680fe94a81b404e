"""export_onnx: the ONNX graph, run by ONNX Runtime, scores as the Predictor does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ef_testing import HAS_CUDA, emodb_files, load_wav

import emohrnet_fast as ef
from emohrnet_fast import audio, models
from emohrnet_fast.cli import main
from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops import log_mel, reference
from emohrnet_fast.ops.mel import build_tables

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

# The exporter logs and warns about its own internals (torchvision ops, pytree deprecations).
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

LABELS = ("angry", "happy", "neutral", "sad")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_graph(path, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, probabilities = session(path).run(None, {"waveform": waveforms.numpy()})
    return torch.from_numpy(logits), torch.from_numpy(probabilities)


def metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def speech() -> list[torch.Tensor]:
    """Four EmoDB utterances at 16 kHz (the models' rate), of four different lengths."""
    clips = []
    for path in emodb_files(4):
        samples, rate = load_wav(path)
        clips.append(audio.resample(samples, rate, 16000))
    return clips


def trained_like(model: ef.models.base.EmotionModel) -> ef.models.base.EmotionModel:
    """Labels, a temperature, input statistics and BatchNorm statistics, as training
    leaves them (a fresh model's BatchNorms would fold to identities)."""
    model.labels = LABELS
    model.temperature = 1.7
    model.input_norm.mean.fill_(-40.0)
    model.input_norm.std.fill_(15.0)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model.eval()


def test_bundled_model_scores_real_speech_as_the_predictor_does(tmp_path, speech):
    path = ef.export_onnx(tmp_path / "default.onnx")
    predictor = ef.Predictor("default", device="cpu", precision="fp32")
    meta = metadata(path)
    assert json.loads(meta["labels"]) == list(predictor.labels)
    assert int(meta["sample_rate"]) == predictor.sample_rate
    assert int(meta["min_samples"]) == predictor.min_samples
    assert float(meta["temperature"]) == predictor.model.temperature
    assert meta["speaker_norm"] == "false"
    assert meta["emohrnet_fast_version"] == ef.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["default.onnx"]  # weights inside, no temp
    for clip in speech:  # one clip per call: a different length each time
        logits, probabilities = run_graph(path, clip[None])
        torch.testing.assert_close(
            logits, predictor.logits(clip, 16000)[None], atol=2e-4, rtol=1e-4
        )
        torch.testing.assert_close(probabilities, predictor.probabilities(clip, 16000)[None])
    shortest = min(c.numel() for c in speech)
    batch = torch.stack([c[:shortest] for c in speech])
    _, probabilities = run_graph(path, batch)
    torch.testing.assert_close(probabilities, predictor.probabilities(batch, 16000))
    edge = speech[1][: predictor.min_samples]  # the shortest clip the graph accepts
    _, probabilities = run_graph(path, edge[None])
    torch.testing.assert_close(probabilities, predictor.probabilities(edge, 16000)[None])


def test_emohrnet_with_an_odd_length_and_its_fuse_untouched(tmp_path, speech):
    model = trained_like(models.create("emohrnet_compact", num_classes=len(LABELS)))
    path = ef.export_onnx(tmp_path / "hr.onnx", model)
    # The export folded a copy: the caller's model still runs the compiled fuse.
    assert all(m.fuse == "kernel" for m in model.modules() if hasattr(m, "fuse_layers"))
    predictor = ef.Predictor(model, device="cpu", precision="fp32")
    odd = torch.stack([clip[: 16000 + 1601] for clip in speech[:3]])  # 1 frame past 100
    logits, probabilities = run_graph(path, odd)
    torch.testing.assert_close(logits, predictor.logits(odd, 16000), atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(probabilities, predictor.probabilities(odd, 16000))
    assert json.loads(metadata(path)["labels"]) == list(LABELS)
    assert metadata(path)["source"] == "<in memory>"


def test_speaker_normalised_model_holds_its_speakers_statistics(tmp_path, speech):
    model = trained_like(models.create("centerloss_cnn_mfcc", num_classes=len(LABELS)))
    model.speaker_norm = True
    with pytest.raises(ValueError, match="speaker normalisation: pass speaker_audio"):
        ef.export_onnx(tmp_path / "sn.onnx", model)
    path = ef.export_onnx(tmp_path / "sn.onnx", model, speaker_audio=speech[:2], sample_rate=16000)
    assert metadata(path)["speaker_norm"] == "true"
    adapted = ef.Predictor(model, device="cpu", precision="fp32").adapt(speech[:2], 16000)
    for clip in speech[2:]:
        _, probabilities = run_graph(path, clip[None])
        torch.testing.assert_close(probabilities, adapted.probabilities(clip, 16000)[None])
    unadapted = ef.Predictor(model, device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="speaker normalisation"):
        plain = unadapted.probabilities(speech[2], 16000)
    assert not torch.allclose(run_graph(path, speech[2][None])[1][0], plain, atol=1e-3)


def test_bad_requests_are_clear_errors(tmp_path, speech):
    with pytest.raises(ValueError, match="without speaker normalisation"):
        ef.export_onnx(tmp_path / "x.onnx", speaker_audio=speech[:1], sample_rate=16000)
    with pytest.raises(ValueError, match="opset >= 17"):
        ef.export_onnx(tmp_path / "x.onnx", opset=16)
    with pytest.raises(ValueError, match="opset=True"):
        ef.export_onnx(tmp_path / "x.onnx", opset=True)
    with pytest.raises(FileNotFoundError):
        ef.export_onnx(tmp_path / "x.onnx", tmp_path / "no-such-checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_file_that_runs(tmp_path, speech, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main(["onnx", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    _, probabilities = run_graph(out, speech[0][None])
    assert probabilities.shape == (1, 7)
    np.testing.assert_allclose(probabilities.sum().item(), 1.0, rtol=1e-5)
    assert main(["onnx", str(out), "--opset", "12"]) == 1
    assert "opset >= 17" in capsys.readouterr().err


class _ReferenceFrontEnd(torch.nn.Module):
    def __init__(self, config: FrontEndConfig, tables=None) -> None:
        super().__init__()
        self.config, self.tables = config, tables

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return reference.log_mel(waveform, self.config, check=False, tables=self.tables)


class _KernelFrontEnd(_ReferenceFrontEnd):
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return log_mel(waveform, self.config, tables=self.tables)


@pytest.mark.parametrize("frontend", [_ReferenceFrontEnd, _KernelFrontEnd])
def test_torch_export_without_tables_is_a_clear_error_and_leaves_the_caches_clean(frontend):
    # A config no other test uses, so its tables are not cached yet.
    config = FrontEndConfig(n_mels=37, n_fft=400, hop_length=123)
    waveform = torch.randn(2, 4000)
    with pytest.raises(ValueError, match=r"under torch\.export"):
        torch.export.export(frontend(config), (waveform,))
    # The failed trace cached nothing fake: eager calls still compute real features.
    expected = reference.log_mel(waveform.double(), config, torch.float64).float()
    torch.testing.assert_close(frontend(config)(waveform), expected, atol=1e-3, rtol=1e-4)
    tables = (
        reference.dense_tables(config) if frontend is _ReferenceFrontEnd else build_tables(config)
    )
    exported = torch.export.export(frontend(config, tables), (waveform,))
    torch.testing.assert_close(exported.module()(waveform), expected, atol=1e-3, rtol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_a_model_on_the_gpu_stays_there_and_exports_the_same_graph(tmp_path, speech):
    model = trained_like(models.create("centerloss_cnn_mfcc", num_classes=len(LABELS)))
    on_cpu = ef.export_onnx(tmp_path / "cpu.onnx", model)
    model.cuda()
    on_gpu = ef.export_onnx(tmp_path / "gpu.onnx", model)
    assert next(model.parameters()).is_cuda
    batch = torch.stack([clip[:20000] for clip in speech])
    torch.testing.assert_close(run_graph(on_gpu, batch), run_graph(on_cpu, batch))
