"""A trained model as one ONNX graph, waveform in, scores out, for ONNX Runtime and the other
runtimes that cannot load this package's compiled extension.

The graph computes what :class:`~emohrnet_fast.Predictor` computes, on the pure-PyTorch path:
the reference front-end (:func:`emohrnet_fast.ops.reference.log_mel`: reflect padding, STFT,
dense Mel filterbank, dB with each clip's ``top_db`` floor, DCT for MFCCs), for a
speaker-normalised model the statistics of the one speaker it was exported for, the model with
its BatchNorms folded into its convolutions and the eager HRNet fuse, and the calibrated
softmax; float32 throughout.

- Input ``waveform``: ``(batch, samples)`` float32, mono, at the model's sample rate, every
  clip at least ``min_samples`` long (both are in the metadata). Both axes are dynamic.
  Resample, downmix and zero-pad shorter clips to ``min_samples`` first, as the Predictor
  does for you.
- Outputs ``logits`` and ``probabilities`` (``softmax(logits / temperature)``), each
  ``(batch, classes)``.
- ``metadata_props``: ``labels`` (a JSON list: column i is ``labels[i]``), ``sample_rate``,
  ``min_samples``, ``temperature``, ``speaker_norm`` (``"true"`` when the graph holds one
  speaker's statistics), ``source`` (the checkpoint it came from) and
  ``emohrnet_fast_version``.

Needs the ``onnx`` extra (``pip install "emohrnet_fast[onnx]"``: onnx, onnxscript, and
onnxruntime to run the file).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.models.base import EmotionModel, fold_batchnorm
from emohrnet_fast.models.emohrnet import HighResolutionModule
from emohrnet_fast.ops import reference
from emohrnet_fast.speaker_norm import SpeakerStats, speaker_scale

if TYPE_CHECKING:
    from emohrnet_fast.infer import AudioInput

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("logits", "probabilities")
# STFT entered the ONNX standard in opset 17; the exporter's own default may be higher.
MIN_OPSET = 17


class WaveformClassifier(nn.Module):
    """``waveform (batch, samples)`` float32 -> ``(logits, probabilities)``, each
    ``(batch, classes)``: the exported graph, as a module (pure PyTorch, no compiled ops)."""

    window: Tensor
    filterbank: Tensor | None
    dct: Tensor | None
    speaker_mean: Tensor | None
    speaker_std: Tensor | None

    def __init__(self, model: EmotionModel, speaker: SpeakerStats | None = None) -> None:
        super().__init__()
        self.frontend_config: FrontEndConfig = model.default_frontend
        # fold_batchnorm returns an eval-mode copy: the caller's model keeps its own fuse.
        self.model = fold_batchnorm(model).cpu().float()
        for module in self.model.modules():
            if isinstance(module, HighResolutionModule):
                module.fuse = "reference"  # the compiled hr_fuse has no ONNX form
        self.temperature = float(model.temperature)  # the calibrated softmax's
        tables = reference.dense_tables(self.frontend_config)
        self.register_buffer("window", tables.window)
        self.register_buffer("filterbank", tables.filterbank)
        self.register_buffer("dct", tables.dct)
        self.register_buffer("speaker_mean", None if speaker is None else speaker.mean.cpu())
        self.register_buffer("speaker_std", None if speaker is None else speaker.std.cpu())

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        tables = reference.DenseTables(self.window, self.filterbank, self.dct)
        features = reference.log_mel(waveform, self.frontend_config, check=False, tables=tables)
        if self.speaker_mean is not None and self.speaker_std is not None:
            stats = SpeakerStats(self.speaker_mean, self.speaker_std)
            features = speaker_scale(features, stats, self.model.input_norm)
        logits = self.model.classify(features.unsqueeze(1))
        return logits, torch.softmax(logits / self.temperature, dim=1)


def export_onnx(
    path: str | os.PathLike,
    model: str | os.PathLike | EmotionModel = "default",
    *,
    speaker_audio: AudioInput | None = None,
    sample_rate: int | None = None,
    opset: int | None = None,
) -> Path:
    """Write ``model`` as an ONNX file at ``path``: waveform in, logits and calibrated
    probabilities out (see the module docstring for the inputs, outputs and metadata).

    Args:
        path: the ``.onnx`` file to write (written whole, weights inside, then renamed into
            place: an interrupted export leaves no partial file).
        model: ``"default"`` (the bundled model), a checkpoint or run folder, or an
            :class:`~emohrnet_fast.models.base.EmotionModel` in memory, as for
            :class:`~emohrnet_fast.Predictor`.
        speaker_audio: for a speaker-normalised model (``TrainConfig(speaker_norm=True)``),
            unlabelled clips of the one speaker the graph is for (as for
            :meth:`~emohrnet_fast.Predictor.adapt`); their statistics become constants of
            the graph. Required for such a model, refused for the others.
        sample_rate: the rate of ``speaker_audio`` when it holds arrays.
        opset: the ONNX opset (at least 17, where STFT entered the standard); ``None``: the
            exporter's default.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ImportError: onnx or onnxscript is not installed.
        ValueError: a speaker-normalised model without ``speaker_audio``, ``speaker_audio``
            for a model without speaker normalisation, an opset below 17, or any error
            :class:`~emohrnet_fast.Predictor` raises for ``model``.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs both)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f'export_onnx needs onnx and onnxscript ({error}): pip install "emohrnet_fast[onnx]"'
        ) from error
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)):
        raise ValueError(f"opset={opset!r}: expected an integer >= {MIN_OPSET} or None")
    if opset is not None and opset < MIN_OPSET:
        raise ValueError(f"opset={opset}: the STFT needs opset >= {MIN_OPSET}")
    from emohrnet_fast import __version__
    from emohrnet_fast.infer import Predictor

    # A model in memory stays on its device (a Predictor given a device would move it).
    device = None if isinstance(model, nn.Module) else "cpu"
    predictor = Predictor(model, device=device, precision="fp32", cuda_graphs=False)
    plain = predictor.model
    if plain.speaker_norm and speaker_audio is None:
        raise ValueError(
            "this model was trained with speaker normalisation: pass speaker_audio (clips of "
            "the speaker the exported graph will hear) so the graph can hold their statistics"
        )
    if speaker_audio is not None:
        predictor.adapt(speaker_audio, sample_rate)  # refuses a model without speaker norm
    graph = WaveformClassifier(plain, predictor.speaker).eval()

    example = torch.zeros(2, max(predictor.min_samples, predictor.sample_rate))
    dims = {
        0: torch.export.Dim("batch", min=1),
        1: torch.export.Dim("samples", min=predictor.min_samples),
    }
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    # The exporter's notes on its own internals (torchvision ops it skips, pytree
    # deprecations) are nothing a caller can act on.
    exporter_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"waveform": dims},
                opset_version=opset,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    if program is None:  # only the legacy (dynamo=False) exporter returns nothing
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
    program.model.metadata_props.update(
        {
            "labels": json.dumps(list(predictor.labels)),
            "sample_rate": str(predictor.sample_rate),
            "min_samples": str(predictor.min_samples),
            "temperature": repr(float(plain.temperature)),
            "speaker_norm": "true" if predictor.speaker is not None else "false",
            "source": str(predictor.source) if predictor.source is not None else "<in memory>",
            "emohrnet_fast_version": __version__,
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        program.save(temp, external_data=False)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


__all__ = ["WaveformClassifier", "export_onnx"]
