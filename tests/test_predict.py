"""Inference: Predictor, predict, predict_timeline, Timeline, the bundled-model hooks and the
predict / timeline / demo / info commands, on a tiny model trained once per module."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from ef_testing import HAS_CUDA
from train_fixtures import TINY

import emohrnet_fast as ef
from emohrnet_fast import audio, checkpoint, infer
from emohrnet_fast.cli import main
from emohrnet_fast.features import FrontEnd

RATE = 16000


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    ef.train(TINY, corpus, out_dir=out, progress=False, quiet=True)
    return out


@pytest.fixture(scope="module")
def predictor(run) -> ef.Predictor:
    return ef.Predictor(run, device="cpu")


@pytest.fixture(scope="module")
def speech(corpus) -> list[torch.Tensor]:
    """Real EmoDB utterances at 16 kHz (2 s each)."""
    return [corpus.waveforms[i].clone() for i in range(6)]


@pytest.fixture(scope="module")
def wavs(corpus) -> list[Path]:
    return sorted(Path(corpus.root).glob("*.wav"))[:3]


@pytest.fixture
def bundled(run, tmp_path, monkeypatch) -> Path:
    """A bundled model in place: the tiny run's checkpoint, with a model card."""
    folder = tmp_path / "assets" / "default"
    shutil.copytree(checkpoint.resolve(run), folder)
    meta = json.loads((folder / checkpoint.META_FILE).read_text())
    meta["card"] = {
        "name": "tiny-test",
        "training_corpus": "EmoDB (4 speakers)",
        "protocol": "loso",
        "cv_ua": 0.5125,
        "cv_wa": 0.55,
    }
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))
    monkeypatch.setattr(checkpoint, "BUNDLED_DIR", folder)
    return folder


@pytest.fixture
def no_bundled(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "BUNDLED_DIR", tmp_path / "absent" / "default")


def probs(predictor, clip, rate=RATE) -> torch.Tensor:
    return predictor.probabilities(clip, rate)


# --------------------------------------------------------------------------- results
def test_one_clip_gives_sorted_probabilities_of_every_label(predictor, speech):
    result = predictor(speech[0], RATE)
    assert [set(r) for r in result] == [{"label", "score"}] * 3
    assert sorted(r["label"] for r in result) == sorted(predictor.labels)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-6)
    expected = torch.softmax(predictor.logits(speech[0], RATE), dim=0)
    assert {r["label"]: r["score"] for r in result} == {
        name: float(p) for name, p in zip(predictor.labels, expected, strict=True)
    }


def test_predict_function_matches_predictor(run, predictor, speech):
    assert ef.predict(speech[1], RATE, model=run, device="cpu") == predictor(speech[1], RATE)


def test_top_k(predictor, speech):
    full = predictor(speech[0], RATE)
    assert predictor(speech[0], RATE, top_k=1) == full[:1]
    assert predictor(speech[0], RATE, top_k=2) == full[:2]
    assert predictor(speech[0], RATE, top_k=10) == full  # capped at the class count
    batch = predictor(torch.stack(speech[:2]), RATE, top_k=1)
    assert [len(r) for r in batch] == [1, 1]
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="top_k="):
            predictor(speech[0], RATE, top_k=bad)


def test_input_forms_agree(predictor, speech):
    clip = speech[2]
    reference = probs(predictor, clip)
    assert probs(predictor, clip.numpy()).tolist() == reference.tolist()
    assert probs(predictor, clip.double()).tolist() == reference.tolist()
    assert probs(predictor, clip.numpy().astype(np.float64)).tolist() == reference.tolist()
    torch.testing.assert_close(probs(predictor, clip.half()), reference, atol=1e-3, rtol=0)
    # a non-contiguous, read-only array
    strided = np.repeat(clip.numpy(), 2)[::2]
    strided.flags.writeable = False
    assert probs(predictor, strided).tolist() == reference.tolist()


def test_batch_and_list_return_one_result_per_clip(predictor, speech):
    batch = torch.stack(speech[:3])
    results = predictor(batch, RATE)
    assert len(results) == 3 and all(len(r) == 3 for r in results)
    assert predictor.probabilities(batch, RATE).shape == (3, 3)
    assert predictor.logits(batch.numpy(), RATE).shape == (3, 3)
    assert predictor.logits(speech[0], RATE).shape == (3,)
    clips = [speech[0][:9000], speech[1], speech[2][:23456].numpy()]
    assert len(predictor(clips, RATE)) == 3
    assert predictor.probabilities(clips, RATE).shape == (3, 3)
    assert predictor([], RATE) == []
    assert predictor.logits([], RATE).shape == (0, 3)
    assert predictor(torch.zeros(0, 16000), RATE) == []


def test_length_bucketing_makes_each_clip_independent_of_the_others(run, predictor, speech):
    clips = [speech[0][:9000], speech[1], speech[2][:23456], speech[3][:4000], speech[4]]
    mixed = predictor.probabilities(clips, RATE)
    alone = torch.stack([probs(predictor, c) for c in clips])
    unique = [0, 2, 3]  # lengths no other clip has: exactly a lone call
    assert torch.equal(mixed[unique], alone[unique])
    # speech[1] and speech[4] share a length and a batch: equal up to the kernels' rounding
    torch.testing.assert_close(mixed, alone, atol=1e-6, rtol=0)
    # the order of the other clips does not matter
    reordered = predictor.probabilities([clips[4], clips[3], clips[2], clips[1], clips[0]], RATE)
    assert torch.equal(reordered.flip(0)[unique], mixed[unique])
    # batch_size=1 runs every clip alone: all bit-identical to lone calls
    single = ef.Predictor(run, device="cpu", batch_size=1)
    assert torch.equal(single.probabilities(clips, RATE), alone)
    # what bucketing avoids: zero-padding a clip to a longer one changes its answer
    padded = torch.nn.functional.pad(clips[0], (0, clips[1].numel() - clips[0].numel()))
    assert not torch.allclose(probs(predictor, padded), alone[0], atol=1e-6, rtol=0)


def test_embeddings_are_what_the_classifier_reads(run, predictor, speech):
    model = ef.load_model(run)
    dim = model.embedding_dim
    one = predictor.embeddings(speech[0], RATE)
    assert one.shape == (dim,) and one.dtype == torch.float32 and one.device.type == "cpu"
    features = FrontEnd(model.default_frontend)(torch.stack(speech[:3])).unsqueeze(1)
    with torch.no_grad():
        expected = model(features)
        # the decoder-free path of the center-loss CNN gives the same vectors
        torch.testing.assert_close(model.embedding(features), expected.embedding)
        torch.testing.assert_close(model.classifier(expected.embedding), expected.logits)
    batch = predictor.embeddings(torch.stack(speech[:3]), RATE)
    torch.testing.assert_close(batch, expected.embedding, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one, batch[0], atol=1e-6, rtol=0)
    # a list of different lengths: bucketed by length, returned in input order
    clips = [speech[0][:9000], speech[1], speech[2][:23456]]
    mixed = predictor.embeddings(clips, RATE)
    alone = torch.stack([predictor.embeddings(c, RATE) for c in clips])
    assert mixed.shape == (3, dim) and torch.equal(mixed, alone)
    assert predictor.embeddings([], RATE).shape == (0, dim)
    with pytest.raises(ValueError, match="sample_rate"):
        predictor.embeddings(speech[0])


def test_emohrnet_embedding_is_its_hidden_layer():
    model = ef.models.create("emohrnet_compact", 4).eval()
    x = torch.randn(2, 1, 64, 37)
    with torch.no_grad():
        out = model(x)
        assert out.embedding.shape == (2, model.embedding_dim)
        torch.testing.assert_close(model.embedding(x), out.embedding)


def test_batch_size_chunks_give_the_same_answers(run, predictor, speech):
    batch = torch.stack(speech)
    chunked = ef.Predictor(run, device="cpu", batch_size=4).probabilities(batch, RATE)
    torch.testing.assert_close(chunked, predictor.probabilities(batch, RATE), atol=1e-6, rtol=0)


def test_int16_pcm_is_scaled(predictor, speech):
    pcm = np.clip(np.round(speech[0].numpy() * 32768), -32768, 32767).astype(np.int16)
    expected = probs(predictor, pcm.astype(np.float32) / np.float32(32768))
    assert torch.equal(probs(predictor, pcm), expected)
    assert torch.equal(probs(predictor, torch.from_numpy(pcm)), expected)
    big_endian = pcm.astype(">i2")  # e.g. np.frombuffer of raw AIFF data
    assert torch.equal(probs(predictor, big_endian), expected)
    assert torch.equal(probs(predictor, big_endian[::2]), probs(predictor, pcm[::2]))


def test_resamples_to_the_model_rate(predictor, speech):
    at_22k = audio.resample(speech[0], RATE, 22050)
    expected = probs(predictor, audio.resample(at_22k, 22050, RATE))
    assert torch.equal(probs(predictor, at_22k, 22050), expected)
    assert torch.equal(probs(predictor, at_22k.numpy(), np.int64(22050)), expected)
    # a 22.05-kHz batch: each row resampled on its own
    rows = torch.stack([at_22k, audio.resample(speech[1], RATE, 22050)])
    each = torch.stack([probs(predictor, row, 22050) for row in rows])
    # a batch may take other CPU convolution algorithms than one clip: equal to rounding
    torch.testing.assert_close(predictor.probabilities(rows, 22050), each, atol=1e-6, rtol=0)


def test_paths_are_decoded_at_the_model_rate(predictor, wavs):
    decoded = [audio.load(p, RATE, mono=True)[0] for p in wavs]
    assert torch.equal(predictor.probabilities(str(wavs[0])), probs(predictor, decoded[0]))
    assert torch.equal(predictor.probabilities(wavs[1]), probs(predictor, decoded[1]))
    assert predictor(wavs[0]) == predictor(decoded[0], RATE)
    expected = predictor.probabilities(decoded, RATE)
    assert torch.equal(predictor.probabilities([str(p) for p in wavs]), expected)
    mixed = predictor.probabilities([wavs[0], decoded[1].numpy()], RATE)
    assert torch.equal(mixed, predictor.probabilities(decoded[:2], RATE))


def test_stereo_files_are_downmixed(predictor, speech, tmp_path):
    stereo = np.stack([speech[0].numpy(), 0.3 * speech[1].numpy()], axis=1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, RATE, subtype="FLOAT")
    mono = torch.from_numpy(stereo.T.copy()).mean(dim=0)
    assert torch.equal(probs(predictor, path), probs(predictor, mono))


def test_silence_gives_a_distribution(predictor):
    for silence in (np.zeros(RATE, np.float32), torch.zeros(3, RATE)):
        p = predictor.probabilities(silence, RATE)
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.sum(dim=-1), torch.ones(p.shape[:-1]), atol=1e-6, rtol=0)


def test_short_clips_are_padded_to_the_model_minimum_with_a_warning(predictor, speech):
    need = predictor.min_samples
    assert need == (predictor.model.min_size - 1) * 160 == 2400  # 16 frames at hop 160
    frontend = FrontEnd(predictor.frontend_config)
    # the minimum is exact: one sample less gives too few frames for the network
    assert frontend(speech[0][: need - 1]).shape[-1] == predictor.model.min_size - 1
    with pytest.raises(ValueError, match="too small"):
        predictor.model(frontend(speech[0][None, : need - 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor(speech[0][:need], RATE)  # exactly the minimum: no warning
    short = speech[0][:1000]
    with pytest.warns(UserWarning, match=r"clip 1 is shorter .* 2400 samples.*zero-padded"):
        result = predictor.probabilities([speech[1], short], RATE)
    padded = torch.nn.functional.pad(short, (0, need - 1000))
    assert torch.equal(result[1], probs(predictor, padded))
    with pytest.warns(UserWarning, match=r"clips 0, 1 are shorter"):
        predictor([short, short[:10]], RATE)
    with pytest.warns(UserWarning, match=r"clips 0, 1 are shorter .*shortest: 1000 samples"):
        batch = predictor.probabilities(torch.stack([short, short.flip(0)]), RATE)
    assert torch.equal(batch[0], probs(predictor, padded))
    with pytest.warns(UserWarning, match="clip 0 is shorter") as record:
        predictor(short[:1], RATE)
    assert record[0].filename == __file__  # attributed to the caller, not the library


# --------------------------------------------------------------------------- bad input
def test_sample_rate_is_required_for_arrays(predictor, speech):
    for clip in (speech[0], speech[0].numpy(), [speech[0]], torch.stack(speech[:2])):
        with pytest.raises(ValueError, match="sample_rate is required for arrays and tensors"):
            predictor(clip)
    for bad in (0, -16000, 16000.0, True, "16000"):
        with pytest.raises(ValueError, match="sample_rate="):
            predictor(speech[0], bad)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(4000, np.int32),
        np.zeros(4000, np.int64),
        np.zeros(4000, np.uint8),
        np.zeros(4000, np.int8),
        torch.zeros(4000, dtype=torch.int32),
        torch.zeros(4000, dtype=torch.uint8),
    ],
    ids=["np-int32", "np-int64", "np-uint8", "np-int8", "torch-int32", "torch-uint8"],
)
def test_integer_samples_other_than_int16_are_rejected(predictor, samples):
    with pytest.raises(TypeError, match=r"no agreed scale.*int16"):
        predictor(samples, RATE)


@pytest.mark.parametrize(
    ("samples", "pattern"),
    [
        (np.zeros(4000, bool), r"bool samples \(bool\); expected real floating-point"),
        (np.zeros(4000, np.complex64), r"complex samples \(complex64\); expected real"),
        (torch.zeros(4000, dtype=torch.bool), r"torch.bool samples; expected real floating"),
        (torch.zeros(4000, dtype=torch.complex64), r"torch.complex64 samples; expected real"),
        (np.array(["a"] * 4000), r"<U1 samples; expected floating-point audio"),
    ],
    ids=["np-bool", "np-complex", "torch-bool", "torch-complex", "np-str"],
)
def test_bool_complex_and_text_samples_are_type_errors(predictor, samples, pattern):
    with pytest.raises(TypeError, match=pattern):
        predictor(samples, RATE)


def test_non_finite_samples_name_the_clip(predictor, speech):
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = speech[1].clone()
        bad[100] = value
        with pytest.raises(ValueError, match="clip 1: non-finite samples"):
            predictor([speech[0], bad], RATE)
        with pytest.raises(ValueError, match="clip 1: non-finite samples"):
            predictor(torch.stack([speech[0], bad]), RATE)
        with pytest.raises(ValueError, match="clip 0: non-finite samples"):
            predictor(bad.numpy(), RATE)
    # Inf and -Inf together make a NaN sum; huge finite samples overflow it to inf and must
    # still pass that check (the clip-by-clip check clears them), to fail as too loud.
    both = speech[1].clone()
    both[100], both[200] = float("inf"), float("-inf")
    with pytest.raises(ValueError, match="clip 1: non-finite samples"):
        predictor(torch.stack([speech[0], both]), RATE)
    loud = torch.full_like(speech[0], 3e38)
    with pytest.raises(ValueError, match="clip 1 is too loud for float32 features"):
        predictor(torch.stack([speech[0], loud]), RATE)


def test_shapes_and_types_that_are_not_audio(predictor, speech):
    with pytest.raises(ValueError, match=r"got \(2, 2, 100\)"):
        predictor(torch.zeros(2, 2, 100), RATE)
    with pytest.raises(ValueError, match=r"got \(\)"):
        predictor(np.array(0.5, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match=r"clip 1: expected a 1-D waveform.*\(2, 100\)"):
        predictor([speech[0], torch.zeros(2, 100)], RATE)
    with pytest.raises(TypeError, match=r"clip 0: .*got float.*np\.asarray"):
        predictor([0.1, 0.2, 0.3], RATE)
    with pytest.raises(TypeError, match="audio: expected a path"):
        predictor(42, RATE)
    with pytest.raises(ValueError, match="meta tensor"):
        predictor(torch.zeros(4000, device="meta"), RATE)


def test_empty_clips_are_errors(predictor, speech):
    with pytest.raises(ValueError, match="clip 0: empty"):
        predictor(np.zeros(0, np.float32), RATE)
    with pytest.raises(ValueError, match="clip 1: empty"):
        predictor([speech[0], torch.zeros(0)], RATE)
    with pytest.raises(ValueError, match="clip 0: empty"):
        predictor(torch.zeros(2, 0), RATE)


def test_missing_and_unreadable_files_are_named(predictor, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.wav"):
        predictor(tmp_path / "nope.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 10)
    with pytest.raises(audio.AudioDecodeError, match=r"garbage\.wav"):
        predictor([str(garbage)])


def test_unknown_models_and_settings(run, no_bundled, tmp_path):
    with pytest.raises(ValueError, match=r"model='happy-net'.*Bundled models: 'default'"):
        ef.predict(np.zeros(RATE), RATE, model="happy-net")
    with pytest.raises(ValueError, match="architecture preset, not a trained model"):
        ef.Predictor("emohrnet_small")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ef.Predictor(tmp_path / "runs" / "nope")
    with pytest.raises(checkpoint.CheckpointError, match="neither a checkpoint"):
        ef.Predictor(tmp_path)
    with pytest.raises(TypeError, match="model: expected"):
        ef.Predictor(3)
    with pytest.raises(TypeError, match="EmotionModel"):
        ef.Predictor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="precision='fp16': expected 'auto', 'fp32' or 'bf16'"):
        ef.Predictor(run, precision="fp16")
    assert ef.Predictor(run, device="cpu").precision == "fp32"  # "auto" on the CPU
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="batch_size="):
            ef.Predictor(run, batch_size=bad)
    with pytest.raises(ValueError, match="device='tpu'"):
        ef.Predictor(run, device="tpu")
    with pytest.raises(ValueError, match="expected 'cpu' or 'cuda"):
        ef.Predictor(run, device="meta")


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA error")
def test_cuda_without_a_gpu_is_a_clear_error(run):
    with pytest.raises(ValueError, match="no usable CUDA device"):
        ef.Predictor(run, device="cuda")


def test_cuda_index_past_the_devices_is_a_clear_error(run, monkeypatch):
    from emohrnet_fast import _info

    monkeypatch.setattr(_info, "cuda_usable", lambda: True)  # as on a machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert _info.resolve_device(None) == torch.device("cuda", 1)
    assert _info.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"device='cuda:2': this machine has 2 CUDA device\(s\)"):
        ef.Predictor(run, device="cuda:2")
    with pytest.raises(ValueError, match=r"TrainConfig.device='cuda:5': this machine has 2"):
        ef.train(ef.TrainConfig(device="cuda:5"), None)


# --------------------------------------------------------------------------- models
def test_bundled_default_model(bundled, run, speech):
    assert checkpoint.resolve("default") == bundled
    model = ef.load_model("default")
    assert model.labels == ef.load_model(run).labels
    expected = ef.Predictor(run, device="cpu")(speech[0], RATE)
    assert ef.predict(speech[0], RATE, device="cpu") == expected
    assert ef.Predictor(device="cpu").source == bundled
    card = infer.bundled_model_card()
    assert card["name"] == "tiny-test" and card["model"] == "centerloss_cnn_mfcc"
    assert infer.card_summary(card) == (
        "tiny-test (centerloss_cnn_mfcc), trained on EmoDB (4 speakers), LOSO UA 51.2 %, WA 55.0 %"
    )


def test_no_bundled_model_is_a_clear_error(no_bundled, speech):
    with pytest.raises(FileNotFoundError, match="no bundled model in this installation"):
        ef.load_model("default")
    with pytest.raises(FileNotFoundError, match="pass a checkpoint path"):
        ef.predict(speech[0], RATE)
    assert infer.bundled_model_card() is None and infer.card_summary(None) == "none"


def test_predictors_are_cached_per_model_and_device(run, speech, monkeypatch):
    infer.clear_cache()
    loads = []
    real = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    first = ef.predict(speech[0], RATE, model=run, device="cpu")
    assert ef.predict(speech[0], RATE, model=str(run), device="cpu") == first
    assert ef.predict(speech[1], RATE, model=checkpoint.resolve(run)) is not None  # same folder
    ef.predict_timeline(speech[0], RATE, model=run, device="cpu")
    assert len(loads) == 1
    infer.clear_cache()
    ef.predict(speech[0], RATE, model=run, device="cpu")
    assert len(loads) == 2


def test_a_model_in_memory(run, predictor, speech):
    model = ef.load_model(run)
    model.train()  # used in eval mode, its mode restored afterwards
    in_memory = ef.Predictor(model)
    assert in_memory.source is None and in_memory.device == torch.device("cpu")
    assert torch.equal(in_memory.probabilities(speech[0], RATE), probs(predictor, speech[0]))
    assert model.training
    assert ef.predict(speech[0], RATE, model=model) == predictor(speech[0], RATE)
    # logits equal the model's own forward up to rounding (the decoder is skipped and the
    # BatchNorms are folded into the convolutions)
    features = FrontEnd(model.default_frontend)(speech[0][None]).unsqueeze(1)
    with torch.inference_mode():
        expected = model.eval()(features).logits[0]
    torch.testing.assert_close(predictor.logits(speech[0], RATE), expected, rtol=1e-5, atol=1e-6)


def test_untrained_model_without_labels_gets_class_names(speech):
    model = ef.models.create("centerloss_cnn_mfcc", 4, channels=(8, 8, 8, 8), embedding_dim=16)
    result = ef.Predictor(model)(speech[0], RATE)
    assert sorted(r["label"] for r in result) == ["class_0", "class_1", "class_2", "class_3"]


def test_bf16_autocast_on_cpu(run, predictor, speech):
    bf16 = ef.Predictor(run, device="cpu", precision="bf16")
    batch = torch.stack(speech[:3])
    torch.testing.assert_close(
        bf16.probabilities(batch, RATE), predictor.probabilities(batch, RATE), atol=0.03, rtol=0
    )


# --------------------------------------------------------------------------- timeline
def _windows(waveform: torch.Tensor, window: int, hop: int, count: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(waveform, (0, (count - 1) * hop + window - len(waveform)))
    return torch.stack([padded[k * hop : k * hop + window] for k in range(count)])


def test_timeline_windows_and_probabilities(run, predictor, speech):
    long = torch.cat(speech)[: round(6.3 * RATE)]  # 6.3 s
    calls = []
    predictor._refold()  # the copy the Predictor runs, its BatchNorms folded
    hook = predictor._folded.embed.register_forward_hook(lambda *_: calls.append(1))
    try:
        timeline = predictor.timeline(long, RATE, window_s=2.0, hop_s=0.5)
    finally:
        hook.remove()
    assert len(calls) == 1  # every window in one batched forward pass
    assert len(timeline) == 10  # 1 + ceil((6.3 - 2) / 0.5)
    assert timeline.starts.tolist() == [0.5 * k for k in range(10)]
    assert timeline.ends.tolist()[:-1] == [0.5 * k + 2 for k in range(9)]
    assert timeline.ends[-1].item() == pytest.approx(6.3)  # the last window is padded past it
    assert timeline.duration == pytest.approx(6.3)
    assert timeline.labels == predictor.labels
    expected = predictor.probabilities(_windows(long, 2 * RATE, RATE // 2, 10), RATE)
    assert torch.equal(timeline.probabilities, expected)
    # the function form, with resampling, through the cached predictor
    at_22k = audio.resample(long, RATE, 22050)
    resampled = ef.predict_timeline(at_22k, 22050, model=run, device="cpu")
    direct = predictor.timeline(audio.resample(at_22k, 22050, RATE), RATE)
    assert torch.equal(resampled.probabilities, direct.probabilities)


def test_timeline_exact_fit_paths_and_chunks(run, predictor, speech, wavs):
    six = torch.cat(speech[:3])  # exactly 6 s: no padding needed
    timeline = predictor.timeline(six, RATE, window_s=1.0, hop_s=0.25)
    assert len(timeline) == 21 and timeline.ends[-1].item() == 6.0
    chunked = ef.Predictor(run, device="cpu", batch_size=8).timeline(
        six, RATE, window_s=1.0, hop_s=0.25
    )
    torch.testing.assert_close(chunked.probabilities, timeline.probabilities, atol=1e-6, rtol=0)
    from_file = predictor.timeline(wavs[0], window_s=1.0, hop_s=0.5)
    decoded = audio.load(wavs[0], RATE, mono=True)[0]
    assert torch.equal(
        from_file.probabilities,
        predictor.timeline(decoded, RATE, window_s=1.0, hop_s=0.5).probabilities,
    )


@pytest.mark.parametrize(
    ("seconds", "window_s", "hop_s", "starts"),
    [(7.5, 1.0, 3.0, [0.0, 3.0, 6.0]), (6.3, 2.0, 10.0, [0.0]), (6.0, 1.0, 2.5, [0.0, 2.5, 5.0])],
)
def test_timeline_hop_longer_than_window_starts_every_window_inside(
    predictor, speech, seconds, window_s, hop_s, starts
):
    long = torch.cat(speech)[: round(seconds * RATE)]
    timeline = predictor.timeline(long, RATE, window_s=window_s, hop_s=hop_s)
    assert timeline.starts.tolist() == starts
    assert (timeline.ends > timeline.starts).all()
    segments = timeline.segments
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(seconds)
    assert all(s.end > s.start for s in segments)


def test_timeline_of_audio_shorter_than_a_window(predictor, speech):
    short = speech[0][: RATE // 2]
    with pytest.warns(UserWarning, match=r"shorter than window_s=2: one window, the whole clip"):
        timeline = predictor.timeline(short, RATE)
    assert len(timeline) == 1 and timeline.ends.tolist() == [0.5]
    # The clip itself, as predict() scores it: no silence padded up to window_s.
    torch.testing.assert_close(timeline.probabilities[0], probs(predictor, short))
    segments = timeline.segments
    assert [(s.start, s.end) for s in segments] == [(0.0, 0.5)]
    tiny = speech[0][: predictor.min_samples // 2]  # below the model's minimum too
    with (
        pytest.warns(UserWarning, match=r"the clip is shorter than the model's minimum"),
        pytest.warns(UserWarning, match=r"shorter than window_s=1: one window"),
    ):
        timeline = predictor.timeline(tiny, RATE, window_s=np.float32(1.0))
    with pytest.warns(UserWarning, match="shorter than the model's minimum"):
        torch.testing.assert_close(timeline.probabilities[0], probs(predictor, tiny))


def test_multichannel_array_as_read_by_soundfile_is_refused(predictor, speech):
    """soundfile.read gives (frames, channels): not 16000 clips of 2 samples."""
    stereo = torch.stack([speech[0], speech[0]], dim=1).numpy()
    with pytest.raises(ValueError, match=r"looks like \(frames, channels\).*audio.mean\(axis=1\)"):
        predictor(stereo, RATE)
    downmixed = predictor(stereo.mean(axis=1), RATE)
    assert downmixed == predictor(speech[0], RATE)


def test_samples_too_large_for_float32_features_are_an_error(predictor, speech):
    """Finite samples of ~1e20 overflow the power spectrum: an error, not NaN scores."""
    loud = [speech[0], speech[1] * 1e20]
    with pytest.raises(ValueError, match=r"clip 1 is too loud for float32 features"):
        predictor(loud, RATE)
    with pytest.raises(ValueError, match=r"clip 0 is too loud"):
        predictor.timeline(speech[0] * 1e20, RATE)
    assert predictor(speech[1] * 3e4, RATE)  # int16-scale samples are fine


def test_timeline_bad_input(predictor, speech):
    with pytest.raises(ValueError, match="expected one clip"):
        predictor.timeline(torch.stack(speech[:2]), RATE)
    with pytest.raises(ValueError, match="expected one clip"):
        predictor.timeline([speech[0]], RATE)
    for name, kwargs in (
        ("window_s", {"window_s": 0}),
        ("hop_s", {"hop_s": -0.5}),
        ("hop_s", {"hop_s": float("nan")}),
        ("window_s", {"window_s": True}),
    ):
        with pytest.raises(ValueError, match=f"{name}="):
            predictor.timeline(speech[0], RATE, **kwargs)
    with pytest.raises(ValueError, match="sample_rate is required"):
        predictor.timeline(speech[0])


def _handmade_timeline() -> ef.Timeline:
    # windows of 2 s every 0.5 s over 4.5 s; top labels a a b b a
    p = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    starts = torch.arange(5, dtype=torch.float64) * 0.5
    return ef.Timeline(
        labels=("a", "b"),
        starts=starts,
        ends=torch.clamp(starts + 2, max=4.5),
        probabilities=p,
        duration=4.5,
        window_s=2.0,
        hop_s=0.5,
    )


def test_segments_merge_windows_and_tile_the_recording():
    timeline = _handmade_timeline()
    assert timeline.top == ["a", "a", "b", "b", "a"]
    segments = timeline.segments
    assert [s.label for s in segments] == ["a", "b", "a"]
    assert [s.windows for s in segments] == [(0, 2), (2, 4), (4, 5)]
    # window k speaks for its centre (k * 0.5 + 1) +- 0.25 s; the edges reach 0 and the end
    assert [(s.start, s.end) for s in segments] == [(0.0, 1.75), (1.75, 2.75), (2.75, 4.5)]
    assert segments[0].score == pytest.approx(0.8)
    assert segments[1].score == pytest.approx(0.7)
    assert segments[1].scores == pytest.approx({"a": 0.3, "b": 0.7})
    assert segments[2].scores == pytest.approx({"a": 0.6, "b": 0.4})


def test_timeline_csv_and_plot(tmp_path):
    timeline = _handmade_timeline()
    path = timeline.to_csv(tmp_path / "out" / "windows.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["start", "end", "label", "score", "a", "b"]
    assert [r["label"] for r in rows] == timeline.top
    assert [float(r["start"]) for r in rows] == timeline.starts.tolist()
    assert [float(r["end"]) for r in rows] == timeline.ends.tolist()
    assert [float(r[name]) for r in rows for name in "ab"] == pytest.approx(
        timeline.probabilities.flatten().tolist(), abs=1e-6
    )
    assert [float(r["score"]) for r in rows] == pytest.approx([0.9, 0.7, 0.8, 0.6, 0.6])
    segments = list(csv.DictReader(timeline.to_csv(tmp_path / "s.csv", segments=True).open()))
    assert [(r["label"], r["start"], r["end"]) for r in segments] == [
        ("a", "0.000", "1.750"),
        ("b", "1.750", "2.750"),
        ("a", "2.750", "4.500"),
    ]
    png = timeline.plot(tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


# --------------------------------------------------------------------------- demo clips
def _demo_folder(folder: Path, wavs: list[Path], labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,label,speaker"]
    for wav, label in zip(wavs, labels, strict=True):
        shutil.copy(wav, folder / wav.name)
        lines.append(f"{wav.name},{label},{wav.name[:2]}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_demo_clips(tmp_path, wavs):
    folder = _demo_folder(tmp_path / "demo", wavs, ["angry", "sad", "neutral"])
    clips = infer.demo_clips(folder)
    assert [c.path for c in clips] == [folder / w.name for w in wavs]
    assert [c.label for c in clips] == ["angry", "sad", "neutral"]
    assert [c.speaker for c in clips] == [w.name[:2] for w in wavs]
    with pytest.raises(FileNotFoundError, match="no demo clips in"):
        infer.demo_clips(tmp_path / "elsewhere")
    (folder / wavs[1].name).unlink()
    with pytest.raises(FileNotFoundError, match=f"lists '{wavs[1].name}', which is missing"):
        infer.demo_clips(folder)
    (folder / "labels.csv").write_text("path,emotion\nx.wav,sad\n")
    with pytest.raises(ValueError, match="expected the columns file,label"):
        infer.demo_clips(folder)
    (folder / "labels.csv").write_text("file,label\n")
    with pytest.raises(ValueError, match="lists no clips"):
        infer.demo_clips(folder)


# --------------------------------------------------------------------------- CLI
def test_cli_predict_table(run, predictor, wavs, capsys):
    assert main(["predict", *map(str, wavs[:2]), "--model", str(run), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "emotion", "score", "others"]
    assert len(lines) == 3
    expected = predictor(wavs[:2])  # the same call the command makes
    for line, wav, ranked in zip(lines[1:], wavs, expected, strict=False):
        cells = line.split()
        assert cells[:3] == [str(wav), ranked[0]["label"], f"{ranked[0]['score']:.3f}"]
        assert cells[3::2] == [r["label"] for r in ranked[1:]]


def test_cli_predict_json_top_k(run, predictor, wavs, capsys):
    argv = ["predict", *map(str, wavs), "--model", str(run), "--json", "--top-k", "2"]
    assert main(argv) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["file"] for e in entries] == [str(w) for w in wavs]
    assert [e["predictions"] for e in entries] == predictor(wavs, top_k=2)


def test_cli_predict_bad_file_fails_alone(run, predictor, wavs, tmp_path, capsys):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF nonsense")
    missing = tmp_path / "missing.flac"
    argv = ["predict", str(wavs[0]), str(missing), str(garbage), "--model", str(run), "--json"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    entries = json.loads(captured.out)
    assert entries[0]["predictions"] == predictor(wavs[0])
    assert "missing.flac" in entries[1]["error"] and "garbage.wav" in entries[2]["error"]
    errors = captured.err.splitlines()
    assert len(errors) == 2 and all(e.startswith("emohrnet-fast: error: ") for e in errors)
    assert "missing.flac" in errors[0] and "garbage.wav" in errors[1]
    # the table form too: the good file is printed, the exit status says one failed
    assert main(["predict", str(missing), str(wavs[1]), "--model", str(run)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith(str(wavs[1]))


def test_cli_predict_unknown_model_is_one_line(wavs, capsys):
    assert main(["predict", str(wavs[0]), "--model", "happy-net"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model='happy-net'" in err


def test_cli_timeline_csv_and_plot(run, speech, tmp_path, capsys):
    wav = tmp_path / "long.wav"
    soundfile.write(wav, torch.cat(speech).numpy(), RATE, subtype="FLOAT")  # 12 s
    csv_path, png = tmp_path / "t.csv", tmp_path / "t.png"
    argv = ["timeline", str(wav), "--model", str(run), "--csv", str(csv_path)]
    assert main([*argv, "--plot", str(png), "--window", "2", "--hop", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{wav}: 12.00 s, 11 windows of 2 s every 1 s"
    assert out[1].split() == ["start", "end", "emotion", "mean", "score"]
    expected = ef.predict_timeline(wav, model=run, window_s=2, hop_s=1, device="cpu")
    assert [line.split()[2] for line in out[2:-2]] == [s.label for s in expected.segments]
    assert out[-2:] == [f"windows: {csv_path}", f"plot: {png}"]
    assert len(list(csv.DictReader(csv_path.open()))) == 11
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["timeline", str(wav), "--model", str(run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["windows"]) == 21 and payload["labels"] == list(expected.labels)


def test_cli_timeline_csv_without_a_path_prints_it(run, speech, tmp_path, capsys):
    wav = tmp_path / "long.wav"
    soundfile.write(wav, torch.cat(speech[:2]).numpy(), RATE, subtype="FLOAT")
    argv = ["timeline", str(wav), "--model", str(run), "--window", "2", "--hop", "1"]
    assert main([*argv, "--csv", str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    for flags in (["--csv"], ["--csv", "-"]):
        assert main([*argv, *flags]) == 0
        assert capsys.readouterr().out == (tmp_path / "t.csv").read_text()
    assert not (tmp_path / "-").exists()
    assert main([*argv, "--csv", "--json"]) == 1
    assert "choose one" in capsys.readouterr().err


def test_cli_compile_flag_reaches_the_predictor(run, wavs, monkeypatch, capsys):
    made = []

    class Spy(infer.Predictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.compile)

    monkeypatch.setattr(infer, "Predictor", Spy)
    outputs = []
    for flags in ([], ["--compile"]):
        assert main(["predict", str(wavs[0]), "--model", str(run), "--json", *flags]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert made == [False, True]
    assert outputs[0] == outputs[1]  # one file, one sighting of its shape: eager both times


def test_cli_demo(run, wavs, tmp_path, capsys):
    labels = ["angry", "sad", "neutral"]
    folder = _demo_folder(tmp_path / "demo", wavs, labels)
    assert main(["demo", "--model", str(run), "--clips", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    predicted = [r[0]["label"] for r in ef.predict(wavs, model=run, device="cpu")]
    correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
    assert out[0].split() == ["file", "speaker", "true", "predicted", "score"]
    for line, wav, true, guess in zip(out[1:4], wavs, labels, predicted, strict=True):
        assert line.split()[:4] == [wav.name, wav.name[:2], true, guess]
        assert line.split()[-1] == ("ok" if guess == true else "x")
    assert out[-1] == f"accuracy: {correct}/3 ({100 * correct / 3:.1f} %)"


def test_cli_demo_without_bundled_model_or_clips(no_bundled, run, tmp_path, wavs, capsys):
    folder = _demo_folder(tmp_path / "demo", wavs[:1], ["angry"])
    assert main(["demo", "--clips", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no bundled model in this installation" in err
    assert main(["demo", "--model", str(run), "--clips", str(tmp_path / "none")]) == 1
    assert "no demo clips in" in capsys.readouterr().err


def test_cli_info_shows_the_bundled_model(bundled, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert (
        "bundled model: tiny-test (centerloss_cnn_mfcc), trained on EmoDB (4 speakers), "
        "LOSO UA 51.2 %, WA 55.0 %" in out
    )
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bundled_model"]["name"] == "tiny-test"


def test_cli_info_without_bundled_model(no_bundled, capsys):
    assert main(["info"]) == 0
    assert "bundled model: none" in capsys.readouterr().out
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bundled_model"] is None


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_cpu(run, predictor, speech):
    clips = [speech[0][:9000], speech[1], speech[2]]
    cuda = ef.Predictor(run, device="cuda", precision="fp32")
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(
        cuda.probabilities(clips, RATE), predictor.probabilities(clips, RATE), atol=1e-4, rtol=0
    )
    on_device = [c.cuda() for c in clips]  # tensors already on the GPU
    torch.testing.assert_close(
        cuda.probabilities(on_device, RATE), predictor.probabilities(clips, RATE), atol=1e-4, rtol=0
    )
    long = torch.cat(speech)
    torch.testing.assert_close(
        cuda.timeline(long, RATE).probabilities,
        predictor.timeline(long, RATE).probabilities,
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        cuda.embeddings(clips, RATE), predictor.embeddings(clips, RATE), atol=1e-4, rtol=1e-4
    )


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_bf16(run, predictor, speech):
    assert ef.Predictor(run, device="cuda").precision == "bf16"  # "auto" on CUDA
    bf16 = ef.Predictor(run, device="cuda", precision="bf16")
    batch = torch.stack(speech[:3])
    torch.testing.assert_close(
        bf16.probabilities(batch, RATE), predictor.probabilities(batch, RATE), atol=0.03, rtol=0
    )
    alone = bf16.probabilities(speech[0], RATE)
    assert torch.isfinite(alone).all() and float(alone.sum()) == pytest.approx(1.0, abs=1e-5)


class _StandInGraph:
    """What the Predictor's graph cache needs of a CUDA graph, on the CPU: replay() reruns the
    captured step on the static input into the static output."""

    def __init__(self, step, static_in):
        self.step, self.static_in = step, static_in
        self.static_out = step(static_in)

    def replay(self):
        self.static_out.copy_(self.step(self.static_in))


def test_graph_cache_captures_once_per_shape_and_again_after_the_weights_move(
    run, speech, monkeypatch
):
    model = ef.load_model(run)
    predictor = ef.Predictor(model, device="cpu")
    eager = ef.Predictor(model, device="cpu", cuda_graphs=False)
    predictor.cuda_graphs = True  # the cache's logic, with CPU stand-ins for capture and replay
    captures = []

    def capture(batch, compiled=False):
        captures.append(tuple(batch.shape))
        graph = _StandInGraph(predictor._classify, batch.clone())
        return graph, graph.static_in, graph.static_out

    monkeypatch.setattr(predictor, "_capture", capture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    batch, pair = torch.stack(speech[:3]), torch.stack(speech[3:5])
    for _ in range(3):
        assert torch.equal(predictor.logits(batch, RATE), eager.logits(batch, RATE))
    # Other audio of the captured shape: the replay must read it, not the captured batch.
    other = batch.flip(1)
    assert torch.equal(predictor.logits(other, RATE), eager.logits(other, RATE))
    assert torch.equal(predictor.logits(pair, RATE), eager.logits(pair, RATE))
    assert captures == [(3, 2 * RATE)]  # eager the first time a shape is seen, then one capture
    model.double().float()  # new parameter storage: a real graph would read freed memory
    for _ in range(2):
        assert torch.equal(predictor.logits(batch, RATE), eager.logits(batch, RATE))
    assert captures == [(3, 2 * RATE)] * 2 and list(predictor._graphs) == [(3, 2 * RATE)]


def test_graph_cache_never_thrashes_and_survives_a_failed_capture(run, speech, monkeypatch):
    """More recurring shapes than the cache holds: the first _GRAPH_CACHE shapes seen twice
    get graphs, the rest run eagerly (evicting would recapture every shape on every call). A
    capture that fails leaves its shape eager, with one warning, and the answers right."""
    from emohrnet_fast.infer import _GRAPH_CACHE

    model = ef.load_model(run)
    predictor = ef.Predictor(model, device="cpu", batch_size=1)
    eager = ef.Predictor(model, device="cpu", cuda_graphs=False, batch_size=1)
    predictor.cuda_graphs = True
    captures, failing = [], {RATE // 2 + 3}

    def capture(batch, compiled=False):
        captures.append(batch.shape[1])
        if batch.shape[1] in failing:
            raise RuntimeError("CUDA out of memory (stand-in)")
        graph = _StandInGraph(predictor._classify, batch.clone())
        return graph, graph.static_in, graph.static_out

    monkeypatch.setattr(predictor, "_capture", capture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    clips = [speech[0][: RATE // 2 + n] for n in range(_GRAPH_CACHE + 3)]  # 11 lengths
    with pytest.warns(UserWarning, match=r"CUDA graph capture failed .* runs without a graph"):
        for _ in range(4):
            assert torch.equal(predictor.logits(clips, RATE), eager.logits(clips, RATE))
    # One failed attempt, which takes no slot, and _GRAPH_CACHE graphs, each captured once.
    assert len(captures) == _GRAPH_CACHE + 1 and len(predictor._graphs) == _GRAPH_CACHE
    assert captures.count(RATE // 2 + 3) == 1  # not retried


def test_the_folded_copy_follows_the_model_and_matches_it(run, speech):
    """The Predictor runs the model with its BatchNorms folded: the model's own logits up to
    rounding, and made again after the weights change in place (an optimizer step does)."""
    model = ef.load_model(run)
    predictor = ef.Predictor(model, device="cpu")
    batch = torch.stack(speech[:3])
    before = predictor.logits(batch, RATE)
    with torch.no_grad():
        direct = model.eval().classify(FrontEnd(model.default_frontend)(batch).unsqueeze(1))
    torch.testing.assert_close(before, direct, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    after = predictor.logits(batch, RATE)
    assert torch.equal(after, ef.Predictor(model, device="cpu").logits(batch, RATE))
    assert not torch.allclose(after, before)


@pytest.mark.parametrize("source", ["run", "emohrnet_compact"])
def test_compiled_predictor_equals_eager_and_compiles_repeated_shapes_only(run, speech, source):
    """compile=True: a shape seen once runs eagerly, a repeated one through the frozen
    compiled graph (hr_fuse kernel included), with eager's answers; new weights, new graph."""
    if source == "run":
        model = ef.load_model(run)
    else:
        torch.manual_seed(0)
        model = ef.models.create(source, num_classes=4)
    compiled = ef.Predictor(model, device="cpu", compile=True)
    eager = ef.Predictor(model, device="cpu")
    batch, one_off = torch.stack(speech[:2]), speech[2][: RATE + 17]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no compile failure, no fallback
        for _ in range(3):
            torch.testing.assert_close(
                compiled.logits(batch, RATE), eager.logits(batch, RATE), rtol=1e-4, atol=1e-4
            )
        torch.testing.assert_close(
            compiled.logits(one_off, RATE), eager.logits(one_off, RATE), rtol=0, atol=0
        )
    assert compiled._compiled_shapes == {tuple(batch.shape)} and compiled._compiled is not None
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)  # frozen constants would be stale: the fold and graph are redone
    for _ in range(2):
        torch.testing.assert_close(
            compiled.logits(batch, RATE), eager.logits(batch, RATE), rtol=1e-4, atol=1e-4
        )
    # From several threads: the right answers, and torch's global compiler config as it was.
    from concurrent.futures import ThreadPoolExecutor

    limit = torch._dynamo.config.recompile_limit
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: compiled.logits(batch, RATE), range(8)))
    for answer in answers:
        torch.testing.assert_close(answer, eager.logits(batch, RATE), rtol=1e-4, atol=1e-4)
    assert torch._dynamo.config.recompile_limit == limit
    assert not torch._inductor.config.freezing


def test_a_failed_compilation_warns_once_and_runs_eagerly(run, speech, monkeypatch):
    def broken(*args, **kwargs):
        def fail(features):
            raise RuntimeError("no C++ compiler (stand-in)\nsecond line")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = ef.load_model(run)
    predictor = ef.Predictor(model, device="cpu", compile=True)
    eager = ef.Predictor(model, device="cpu")
    batch = torch.stack(speech[:2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            assert torch.equal(predictor.logits(batch, RATE), eager.logits(batch, RATE))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and re.match(
        r"torch.compile failed for a batch of shape \(2, 32000\) \(RuntimeError: no C\+\+ "
        r"compiler \(stand-in\)\); that shape runs eagerly",
        messages[0],
    ), messages
    assert predictor._compile_failed == {tuple(batch.shape)} and not predictor._compiled_shapes


def test_the_weights_fingerprint_sees_every_kind_of_change():
    """What makes the Predictor fold its model again: each change below, and nothing else."""
    from emohrnet_fast.infer import _WeightsWatch

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    watch = _WeightsWatch(model)
    changes = {
        "in place": lambda: _in_place(model[0].weight),
        "replaced parameter": lambda: setattr(model[0], "bias", torch.nn.Parameter(torch.zeros(2))),
        "new submodule": lambda: model.append(torch.nn.ReLU()),
        "replaced submodule": lambda: model.__setitem__(0, torch.nn.Conv2d(1, 2, 3)),
        "cast": lambda: model.double(),
        "running statistics": lambda: model.train()(torch.randn(2, 1, 5, 5, dtype=torch.float64)),
    }
    key = watch.key()
    assert watch.key() == key  # nothing changed
    for what, change in changes.items():
        change()
        assert watch.key() != key, what
        key = watch.key()
    with torch.inference_mode():
        inference = torch.nn.Linear(2, 2)
    assert _WeightsWatch(inference).key() == _WeightsWatch(inference).key()


def _in_place(parameter: torch.Tensor) -> None:
    with torch.no_grad():
        parameter.mul_(0.5)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("source", ["run", "emohrnet_compact"])
def test_cuda_graph_replay_equals_eager(run, speech, precision, source):
    if source == "run":
        model = ef.load_model(run)
    else:  # untrained, but every layer (hr_fuse kernel included) runs inside the graph
        torch.manual_seed(0)
        model = ef.models.create(source, num_classes=4)
    graphed = ef.Predictor(model, device="cuda", precision=precision)
    eager = ef.Predictor(model, device="cuda", precision=precision, cuda_graphs=False)
    batch = torch.stack(speech[:3])
    first = graphed.logits(batch, RATE)  # seen once: eager
    assert not graphed._graphs
    second = graphed.logits(batch, RATE)  # captured, then replayed
    assert len(graphed._graphs) == 1
    torch.testing.assert_close(second, first, atol=1e-5, rtol=0)
    other = torch.flip(batch, dims=[1])  # same shape, new samples: the graph reads its input
    torch.testing.assert_close(
        graphed.logits(other, RATE), eager.logits(other, RATE), atol=1e-5, rtol=0
    )
    assert len(graphed._graphs) == 1 and not eager._graphs
    # new weight tensors (assign=True): the graph would read the old ones, so it is recaptured
    changed = {k: v * 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(changed, assign=True)
    for _ in range(2):
        torch.testing.assert_close(
            graphed.logits(batch, RATE), eager.logits(batch, RATE), atol=1e-5, rtol=0
        )
    assert len(graphed._graphs) == 1


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_compiled_graph_replay_equals_eager(speech, precision):
    """compile=True on CUDA: the compiled model (hr_fuse kernel inside) is what the CUDA graph
    captures; its logits are eager's up to the compiler's rounding."""
    torch.manual_seed(0)
    model = ef.models.create("emohrnet_compact", num_classes=4)
    compiled = ef.Predictor(model, device="cuda", precision=precision, compile=True)
    eager = ef.Predictor(model, device="cuda", precision=precision, cuda_graphs=False)
    batch = torch.stack(speech[:3])
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for _ in range(3):
            torch.testing.assert_close(
                compiled.logits(batch, RATE),
                eager.logits(batch, RATE),
                atol=tolerance,
                rtol=tolerance,
            )
    assert len(compiled._graphs) == 1 and compiled._compiled_shapes == {tuple(batch.shape)}
