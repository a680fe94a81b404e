"""Speaker normalisation: the statistics, training on them, and scoring per speaker."""

from __future__ import annotations

import dataclasses
import importlib
import json
import warnings

import pytest
import torch
from train_fixtures import TINY, assert_same_weights, interrupted_and_resumed, weights

import emohrnet_fast as ef
from emohrnet_fast.cli import main
from emohrnet_fast.evaluate import dataset_logits, shared_speaker_audio
from emohrnet_fast.features import FrontEnd
from emohrnet_fast.models.base import InputNorm
from emohrnet_fast.speaker_norm import MIN_STD, SpeakerStats, band_moments, speaker_scale

train_module = importlib.import_module("emohrnet_fast.train")
CONFIG = TINY.replace(speaker_norm=True, epochs=2)


@pytest.fixture(scope="module")
def trained_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    ef.train(CONFIG, corpus, out_dir=out, progress=False, quiet=True)
    return out


@pytest.fixture(scope="module")
def trained(trained_run):
    return ef.load_model(trained_run)


def manual_stats(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and population std over every frame of ``(n_features, frames)`` items."""
    frames = torch.cat([f.double() for f in features], dim=1)
    return frames.mean(1), frames.std(1, correction=0)


def by_speaker(corpus) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, utterance in enumerate(corpus.utterances):
        groups.setdefault(utterance.speaker, []).append(i)
    return groups


def test_moments_give_each_groups_mean_and_std():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(7, 5, 11, generator=generator) * 3 + 2
    groups = torch.tensor([0, 2, 2, 0, 1, 2, 0])
    stats = SpeakerStats.from_moments(band_moments(features, groups, 3))
    for g in range(3):
        mean, std = manual_stats(list(features[groups == g]))
        torch.testing.assert_close(stats.mean[g], mean.float())
        torch.testing.assert_close(stats.std[g], std.float())
    constant = SpeakerStats.from_moments(band_moments(torch.ones(2, 3, 4)))
    assert torch.equal(constant.std, torch.full((1, 3), MIN_STD))  # no division by zero


@pytest.mark.parametrize("per_clip", [False, True])
def test_input_norm_of_the_scaled_features_is_the_speaker_z_score(per_clip):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(4, 6, 9, generator=generator) * 5 - 30
    rows = 4 if per_clip else 1
    stats = SpeakerStats(
        torch.randn(rows, 6, generator=generator).squeeze(0) - 30,
        torch.rand(rows, 6, generator=generator).squeeze(0) + 0.5,
    )
    norm = InputNorm()
    norm.mean.fill_(-28.0)
    norm.std.fill_(7.0)
    expected = (features - stats.mean[..., None]) / stats.std[..., None]
    torch.testing.assert_close(norm(speaker_scale(features, stats, norm)), expected)


def test_training_standardises_each_speaker_with_its_own_statistics(corpus, monkeypatch):
    """The trainer's per-speaker statistics are those of each speaker's whole utterances,
    as ``Predictor.adapt`` measures a test speaker (training crops of 0.5 s of these 2-s
    clips would differ), and the model receives the speaker's z-scores after its input_norm."""
    captured, seen = [], []
    from_moments = SpeakerStats.from_moments
    monkeypatch.setattr(
        train_module.SpeakerStats,
        "from_moments",
        classmethod(lambda cls, m: captured.append(from_moments(m)) or captured[-1]),
    )
    original = InputNorm.forward
    monkeypatch.setattr(
        InputNorm, "forward", lambda self, x: seen.append(original(self, x)) or seen[-1]
    )
    model = ef.train(CONFIG.replace(epochs=1), corpus, progress=False, quiet=True).model
    (stats,) = captured[:1]
    assert CONFIG.clip_seconds * corpus.sample_rate < int(corpus.waveforms.lengths.min())
    predictor = ef.Predictor(model)
    for row, (_, members) in enumerate(sorted(by_speaker(corpus).items())):
        heard = predictor.adapt([corpus.waveforms[i] for i in members], corpus.sample_rate)
        torch.testing.assert_close(stats.mean[row], heard.speaker.mean, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(stats.std[row], heard.speaker.std, rtol=1e-5, atol=1e-4)
        frames = [FrontEnd(model.default_frontend)(corpus.waveforms[i][None])[0] for i in members]
        mean, std = manual_stats(frames)
        torch.testing.assert_close(stats.mean[row], mean.float(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(stats.std[row], std.float(), rtol=1e-5, atol=1e-4)
    # Per-speaker z-scores have mean ~0 and std ~1 over a whole batch of several speakers.
    first = seen[0]
    assert abs(float(first.mean())) < 0.5 and 0.5 < float(first.std()) < 1.5


def test_checkpoint_keeps_the_flag_and_evaluation_adapts_per_speaker(trained, corpus):
    assert trained.speaker_norm is True
    logits = dataset_logits(trained, corpus)
    frontend = FrontEnd(trained.default_frontend)
    with torch.inference_mode():
        for members in by_speaker(corpus).values():
            features = [frontend(corpus.waveforms[i][None])[0] for i in members]
            mean, std = manual_stats(features)
            stats = SpeakerStats(mean.float(), std.float())
            batch = torch.stack(features)
            expected = trained.classify(speaker_scale(batch, stats, trained.input_norm)[:, None])
            torch.testing.assert_close(logits[members], expected, rtol=1e-4, atol=1e-4)


def test_speakers_known_from_training_keep_their_training_statistics(trained, corpus):
    """A speaker-dependent split: half of each speaker's clips "trained", the other half are
    scored with the first half's statistics, not their own; a speaker with no clips in
    ``speaker_audio`` falls back to their own clips."""
    groups = by_speaker(corpus)
    speakers = sorted(groups)
    heard = [i for s in speakers[1:] for i in groups[s][::2]]  # speakers[0] never trained
    test_rows = [i for i in range(len(corpus)) if i not in set(heard)]
    test = corpus.subset(test_rows)
    audio = shared_speaker_audio(corpus, test, heard)
    assert sorted({u.speaker for u in audio.utterances}) == speakers[1:]
    got = dataset_logits(trained, test, speaker_audio=audio)
    alone = dataset_logits(trained, test)
    frontend = FrontEnd(trained.default_frontend)
    with torch.inference_mode():
        for row, i in enumerate(test_rows):
            speaker = corpus.utterances[i].speaker
            source = groups[speaker][::2] if speaker != speakers[0] else groups[speaker]
            stats = SpeakerStats(
                *(
                    m.float()
                    for m in manual_stats([frontend(corpus.waveforms[j][None])[0] for j in source])
                )
            )
            features = frontend(corpus.waveforms[i][None])
            want = trained.classify(speaker_scale(features, stats, trained.input_norm)[:, None])
            torch.testing.assert_close(got[row], want[0], rtol=1e-4, atol=1e-4)
            if speaker == speakers[0]:
                torch.testing.assert_close(got[row], alone[row])
    assert not torch.allclose(got, alone)
    assert shared_speaker_audio(corpus, test, groups[speakers[1]][:0]) is None
    with pytest.raises(ValueError, match=r"speaker_audio .* waveforms not loaded"):
        dataset_logits(trained, test, speaker_audio=dataclasses.replace(audio, waveforms=None))


def test_predictor_adapt_forget_and_warnings(trained, corpus):
    predictor = ef.Predictor(trained)
    clip = corpus.waveforms[0]
    with pytest.warns(UserWarning, match="trained with speaker normalisation and has no speaker"):
        plain = predictor.logits(clip, corpus.sample_rate)
    members = by_speaker(corpus)[corpus.utterances[0].speaker]
    adapted = predictor.adapt([corpus.waveforms[i] for i in members], corpus.sample_rate)
    assert adapted is predictor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = predictor.logits(clip, corpus.sample_rate)
    assert not torch.allclose(logits, plain)
    torch.testing.assert_close(logits, dataset_logits(trained, corpus)[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(predictor.adapt(None).logits(clip, corpus.sample_rate), plain)
    with pytest.raises(ValueError, match="adapt\\(\\): audio holds no clips"):
        predictor.adapt([])


def test_cli_adapts_to_the_speaker_audio(trained_run, corpus, capsys):
    speaker = corpus.utterances[0].speaker
    clips = [str(u.path) for u in corpus.utterances if u.speaker == speaker]
    target = clips[0]
    argv = ["predict", target, "--json", "--model", str(trained_run)]
    assert main([*argv, "--speaker-audio", *clips[1:3], "--speaker-audio", clips[3]]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    adapted = ef.Predictor(trained_run).adapt(clips[1:4])(target)
    assert entry["predictions"] == adapted
    with pytest.warns(UserWarning, match="has no speaker statistics yet"):
        assert main(argv) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert [p["score"] for p in entry["predictions"]] != [p["score"] for p in adapted]
    plain = ["predict", target, "--speaker-audio", clips[1]]  # the bundled model: no speaker norm
    assert main(plain) == 1
    assert "trained without speaker normalisation" in capsys.readouterr().err


def test_bad_uses(corpus, trained):
    plain_model = ef.models.create("centerloss_cnn_mfcc", 3)
    with pytest.raises(ValueError, match="trained without speaker normalisation"):
        ef.Predictor(plain_model).adapt(corpus.waveforms[0], corpus.sample_rate)
    nameless = dataclasses.replace(
        corpus,
        utterances=tuple(dataclasses.replace(u, speaker=None) for u in corpus.utterances),
    )
    with pytest.raises(ValueError, match="speaker_norm=True needs every training utterance's"):
        ef.train(CONFIG, nameless, progress=False, quiet=True)
    with pytest.raises(ValueError, match="needs every utterance's speaker; 24 have none"):
        dataset_logits(trained, nameless)
    with pytest.raises(ValueError, match="24 of 24 utterances in val_set 'emodb' have no speaker"):
        ef.train(CONFIG, corpus, nameless, progress=False, quiet=True)  # before any epoch
    with pytest.raises(ValueError, match=r"TrainConfig.speaker_norm='yes': expected True"):
        ef.train(CONFIG.replace(speaker_norm="yes"), corpus, progress=False, quiet=True)


def test_resume_recomputes_the_statistics_and_ends_on_the_same_weights(
    corpus, tmp_path, monkeypatch
):
    config = CONFIG.replace(epochs=3)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert_same_weights(weights(resumed.model), weights(full.model))
    plain = ef.train(config.replace(speaker_norm=False), corpus, progress=False, quiet=True)
    assert full.history[-1]["train_loss"] != plain.history[-1]["train_loss"]
