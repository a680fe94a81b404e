"""EnsemblePredictor: several trained models answering as one (mean of their probabilities),
through predict / predict_timeline and the repeated --model of the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import soundfile
import torch
from ef_testing import HAS_CUDA
from train_fixtures import TINY

import emohrnet_fast as ef
from emohrnet_fast import infer
from emohrnet_fast.cli import main

RATE = 16000


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    ef.train(TINY, corpus, out_dir=out, progress=False, quiet=True)
    return out


@pytest.fixture(scope="module")
def model(run) -> ef.models.EmotionModel:
    return ef.load_model(run, "cpu")


@pytest.fixture(scope="module")
def other(model) -> ef.models.EmotionModel:
    """A second member: the same architecture with other weights and its own temperature."""
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    twin.temperature = 1.7
    return twin


@pytest.fixture(scope="module")
def speech(corpus) -> list[torch.Tensor]:
    return [corpus.waveforms[i].clone() for i in range(4)]


@pytest.fixture(scope="module")
def wavs(corpus) -> list[Path]:
    return sorted(Path(corpus.root).glob("*.wav"))[:3]


def mean_of(members, audio, rate=RATE) -> torch.Tensor:
    return torch.stack([m.probabilities(audio, rate) for m in members]).mean(0)


def test_scores_are_the_members_mean_for_every_input_form(model, other, speech, wavs):
    members = [ef.Predictor(model, "cpu"), ef.Predictor(other, "cpu")]
    ensemble = ef.EnsemblePredictor(members)
    assert ensemble.labels == members[0].labels and len(ensemble) == 2
    uneven = [speech[0], speech[1][:20000], speech[2][:12345]]
    for audio, rate in [
        (speech[0], RATE),  # one clip
        (torch.stack(speech), RATE),  # a (clips, time) batch
        (uneven, RATE),  # clips of different lengths
        (speech[0].double().numpy(), 22050),  # an array at another rate: resampled once
        (wavs, None),  # paths: decoded once
        (wavs[0], None),
    ]:
        got = ensemble.probabilities(audio, rate)
        expected = mean_of(members, audio, rate)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert torch.allclose(got.sum(-1), torch.ones(()), atol=1e-5)
    # The members disagree, so the mean is neither of them.
    assert not torch.allclose(
        ensemble.probabilities(speech[0], RATE), members[0].probabilities(speech[0], RATE)
    )


def test_call_ranks_the_mean_like_a_predictor(model, other, speech):
    ensemble = ef.EnsemblePredictor([model, other], device="cpu")
    mean = ensemble.probabilities(speech[0], RATE)
    ranked = ensemble(speech[0], RATE)
    assert [r["score"] for r in ranked] == sorted(mean.tolist(), reverse=True)
    assert {r["label"]: r["score"] for r in ranked} == dict(
        zip(ensemble.labels, mean.tolist(), strict=True)
    )
    assert len(ensemble(speech[0], RATE, top_k=1)) == 1
    batch = ensemble(speech[:2], RATE)
    assert len(batch) == 2 and [r["label"] for r in batch[0]] == [r["label"] for r in ranked]
    # A batch runs other CPU kernels than one clip (oneDNN picks them per shape): equal to rounding.
    assert [r["score"] for r in batch[0]] == pytest.approx([r["score"] for r in ranked], abs=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        ensemble(speech[0], RATE, top_k=0)


def test_members_with_reordered_labels_are_aligned(model, speech):
    permuted = copy.deepcopy(model)
    order = [2, 0, 1]
    with torch.no_grad():
        permuted.classifier.weight.copy_(model.classifier.weight[order])
        permuted.classifier.bias.copy_(model.classifier.bias[order])
    permuted.labels = tuple(model.labels[i] for i in order)
    alone = ef.Predictor(model, "cpu").probabilities(speech[0], RATE)
    ensemble = ef.EnsemblePredictor([model, permuted], device="cpu")
    assert ensemble.labels == model.labels
    torch.testing.assert_close(ensemble.probabilities(speech[0], RATE), alone, rtol=0, atol=1e-6)


def test_bad_members_are_refused(model, run):
    stranger = copy.deepcopy(model)
    stranger.labels = ("angry", "happy", "surprised")
    with pytest.raises(ValueError, match=r"models\[1\] \(<in memory>\) knows the labels"):
        ef.EnsemblePredictor([model, stranger], device="cpu")
    for single in (run, str(run), model):
        with pytest.raises(ValueError, match="expected a list of models"):
            ef.EnsemblePredictor(single)
    with pytest.raises(ValueError, match="at least one member"):
        ef.EnsemblePredictor([])
    with pytest.raises(FileNotFoundError):
        ef.EnsemblePredictor([run, run.parent / "absent"])


def test_per_member_decoding_gives_the_same_scores(model, other, wavs):
    # Members at different rates decode for themselves; with one rate the ensemble decodes
    # once. Both routes must agree.
    ensemble = ef.EnsemblePredictor([model, other], device="cpu")
    shared = ensemble.probabilities(wavs, None)
    ensemble._shared_rate = False
    torch.testing.assert_close(ensemble.probabilities(wavs, None), shared, rtol=0, atol=1e-6)


def test_timeline_averages_the_members_windows(model, other, speech):
    long = torch.cat(speech)  # 8 s
    members = [ef.Predictor(model, "cpu"), ef.Predictor(other, "cpu")]
    timeline = ef.EnsemblePredictor(members).timeline(long, RATE, window_s=1.0, hop_s=0.5)
    alone = [m.timeline(long, RATE, window_s=1.0, hop_s=0.5) for m in members]
    assert len(timeline) == len(alone[0]) == 15
    assert torch.equal(timeline.starts, alone[0].starts) and torch.equal(
        timeline.ends, alone[0].ends
    )
    expected = (alone[0].probabilities + alone[1].probabilities) / 2
    torch.testing.assert_close(timeline.probabilities, expected, rtol=0, atol=1e-6)
    assert timeline.labels == members[0].labels and timeline.segments


def test_adapt_reaches_only_speaker_normalised_members(model, other, speech):
    normalised = copy.deepcopy(model)
    normalised.speaker_norm = True
    ensemble = ef.EnsemblePredictor([normalised, other], device="cpu")
    assert ensemble.adapt(speech[:2], RATE) is ensemble
    assert ensemble.members[0].speaker is not None and ensemble.members[1].speaker is None
    expected = (
        ef.Predictor(normalised, "cpu").adapt(speech[:2], RATE).probabilities(speech[2], RATE)
    )
    torch.testing.assert_close(
        ensemble.members[0].probabilities(speech[2], RATE), expected, rtol=0, atol=1e-6
    )
    ensemble.adapt(None)
    assert ensemble.members[0].speaker is None
    with pytest.raises(ValueError, match="no member of this ensemble"):
        ef.EnsemblePredictor([model, other], device="cpu").adapt(speech[:2], RATE)


def test_predict_with_a_list_of_models(run, speech):
    infer.clear_cache()
    alone = ef.predict(speech[0], RATE, model=run, device="cpu")
    # The same model twice: the mean is that model's answer, and the member is the cached one.
    twice = ef.predict(speech[0], RATE, model=[run, run], device="cpu")
    assert [r["label"] for r in twice] == [r["label"] for r in alone]
    assert [r["score"] for r in twice] == pytest.approx([r["score"] for r in alone], abs=1e-6)
    assert len(infer._PREDICTORS) == 1
    timeline = ef.predict_timeline(torch.cat(speech), RATE, model=(run, run), device="cpu")
    single = ef.predict_timeline(torch.cat(speech), RATE, model=run, device="cpu")
    torch.testing.assert_close(timeline.probabilities, single.probabilities, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="model: expected 'default', a checkpoint path"):
        ef.predict(speech[0], RATE, model=[run, [run]], device="cpu")  # ensembles do not nest


def test_cli_repeated_model_is_an_ensemble(run, tmp_path, wavs, monkeypatch, capsys):
    made = []
    real = infer.Predictor

    class Spy(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.compile)

    monkeypatch.setattr(infer, "Predictor", Spy)
    monkeypatch.setattr("emohrnet_fast.ensemble.Predictor", Spy)
    files = [str(w) for w in wavs]
    assert main(["predict", *files, "--model", str(run), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    ensemble = ["--model", str(run), "--model", str(run), "--compile"]
    assert main(["predict", *files, *ensemble, "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert made == [False, True, True]  # one Predictor, then the ensemble's two
    for a, b in zip(single, both, strict=True):
        assert a["file"] == b["file"]
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert [p["score"] for p in b["predictions"]] == pytest.approx(
            [p["score"] for p in a["predictions"]], abs=1e-6
        )
    long = tmp_path / "long.wav"
    soundfile.write(long, torch.cat([ef.audio.load(w, RATE)[0][0] for w in wavs]).numpy(), RATE)
    assert main(["timeline", str(long), "--model", str(run), "--model", str(run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["labels"] == list(real(run, "cpu").labels) and payload["windows"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_ensemble_matches_cpu(model, other, speech):
    clips = [speech[0], speech[1][:20000]]
    on_cpu = ef.EnsemblePredictor([model, other], device="cpu").probabilities(clips, RATE)
    on_gpu = ef.EnsemblePredictor([model, other], device="cuda", precision="fp32")
    assert all(m.device.type == "cuda" for m in on_gpu.members)
    for _ in range(3):  # eager, then captured, then replayed CUDA graphs
        torch.testing.assert_close(on_gpu.probabilities(clips, RATE), on_cpu, atol=1e-4, rtol=0)
    on_device = [c.cuda() for c in clips]
    torch.testing.assert_close(on_gpu.probabilities(on_device, RATE), on_cpu, atol=1e-4, rtol=0)


def test_evaluate_scores_an_ensemble_as_the_predictor_answers(model, other, corpus):
    report = ef.evaluate([model, other], corpus)
    clips = [corpus.waveforms[i] for i in range(len(corpus))]
    scores = ef.EnsemblePredictor([model, other], device="cpu").probabilities(
        clips, corpus.sample_rate
    )
    truth = [model.labels.index(u.label) for u in corpus.utterances]
    expected = ef.Report.from_predictions(truth, scores.argmax(1), model.labels, scores=scores)
    assert report.confusion == expected.confusion and report.ua == expected.ua
    assert report.ece == pytest.approx(expected.ece, abs=1e-6)
    assert report.meta["ensemble_of"] == 2
    # One model in a list is that model.
    alone = ef.evaluate(model, corpus)
    assert ef.evaluate([model], corpus).confusion == alone.confusion
    assert "ensemble_of" not in alone.meta
    stranger = copy.deepcopy(model)
    stranger.labels = (*model.labels[:-1], "surprised")
    with pytest.raises(ValueError, match="labels the model was not trained on"):
        ef.evaluate([model, stranger], corpus)
    with pytest.raises(ValueError, match="empty list"):
        ef.evaluate([], corpus)
    with pytest.raises(TypeError, match=r"expected an EmotionModel .* got Linear"):
        ef.evaluate([model, torch.nn.Linear(2, 7)], corpus)


def test_cli_evaluate_repeated_checkpoint(run, corpus, capsys):
    data = ["--corpus", "emodb", "--root", str(corpus.root), "--json"]
    assert main(["evaluate", "--checkpoint", str(run), *data]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--checkpoint", str(run), "--checkpoint", str(run), *data]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["confusion"] == alone["confusion"] and both["ua"] == pytest.approx(alone["ua"])
    assert both["meta"]["checkpoint"] == [str(run), str(run)]
    assert both["meta"]["ensemble_of"] == 2
