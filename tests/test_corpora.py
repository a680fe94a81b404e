"""Corpus readers on fixture trees in each official layout, and on the real EmoDB copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import corpus_fixtures as fx
import numpy as np
import pytest
import torch
from ef_testing import EMODB

import emohrnet_fast as ef
from emohrnet_fast.data import corpus as corpus_module
from emohrnet_fast.data import labels
from emohrnet_fast.data.corpus import Waveforms

load_corpus = ef.data.load_corpus


def _load(name, root, tmp_path, **kw):
    return load_corpus(name, root, cache_dir=tmp_path / "cache", progress=False, **kw)


def _reasons(corpus) -> Counter:
    return Counter(s.reason for s in corpus.skipped)


def _emodb_or_skip():
    if not EMODB.is_dir():
        pytest.skip(f"EmoDB not found at {EMODB} (set EMOHRNET_EMODB)")
    return EMODB


# --- EmoDB ---------------------------------------------------------------------------------


def test_emodb_real_copy_metadata():
    corpus = load_corpus("emodb", _emodb_or_skip(), load_audio=False)
    assert len(corpus) == 535
    assert corpus.speakers == ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
    codes = Counter(u.source_label for u in corpus)
    assert codes == {"W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}
    assert corpus.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom")
    assert corpus.speaker_counts()["13"] == 61 and corpus.speaker_counts()["16"] == 71
    genders = {u.speaker: u.gender for u in corpus}
    assert [s for s, g in genders.items() if g == "female"] == ["08", "09", "13", "14", "16"]
    assert corpus.skipped == ()
    summary = str(corpus)
    assert "535 utterances" in summary and "angry 127" in summary and "03 49" in summary


def test_emodb_real_copy_decode_and_cache(tmp_path, monkeypatch):
    root = _emodb_or_skip()
    start = time.perf_counter()
    first = _load("emodb", root, tmp_path)
    first_s = time.perf_counter() - start
    assert first.cache_status == "miss"
    assert first.waveforms.lengths.tolist() == [32000] * 535  # 2.0 s at 22.05 kHz -> 16 kHz
    waveforms, _ = first.waveforms.padded()
    assert waveforms.shape == (535, 32000) and waveforms.dtype == torch.float32

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cache hit must not decode")

    monkeypatch.setattr(corpus_module, "_decode_one", no_decoding)
    start = time.perf_counter()
    second = _load("emodb", root, tmp_path)
    second_s = time.perf_counter() - start
    assert second.cache_status == "hit"
    assert torch.equal(second.waveforms.data, first.waveforms.data)
    assert second_s < first_s, f"cached load {second_s:.3f} s, first decode {first_s:.3f} s"


def test_emodb_fixture_layouts(tmp_path):
    for flat in (False, True):
        root = fx.emodb(tmp_path / f"emodb-{flat}", flat=flat)
        corpus = _load("emodb", root, tmp_path)
        assert len(corpus) == 14 and corpus.speakers == ("03", "08")
        assert len(corpus.labels) == 7
        assert [s.path.name for s in corpus.skipped] == ["notes.wav"]
        assert "notes.wav" in str(corpus)
        u = corpus[0]
        assert (u.speaker, u.gender, u.metadata["text"], u.metadata["take"]) == (
            "03",
            "male",
            "a01",
            "a",
        )


# --- the other corpora ---------------------------------------------------------------------


def test_ravdess_speech_only(tmp_path):
    corpus = _load("ravdess", fx.ravdess(tmp_path / "ravdess"), tmp_path)
    assert len(corpus) == 16
    assert set(corpus.labels) == set(labels.RAVDESS.values()) and "calm" in corpus.labels
    assert corpus.speakers == ("01", "02")
    assert {u.speaker: u.gender for u in corpus} == {"01": "male", "02": "female"}
    neutral = next(u for u in corpus if u.label == "neutral")
    assert neutral.metadata == {"intensity": "normal", "statement": 2, "repetition": 1}
    reasons = _reasons(corpus)
    assert reasons["song (vocal channel 02): speech only"] == 1
    assert reasons["video file (modality 01/02): audio-only speech is modality 03"] == 2
    assert reasons["actor field differs from its Actor_XX folder"] == 1
    assert len(corpus.skipped) == 5
    assert corpus.waveforms.lengths.tolist() == [800] * 16  # 50 ms, 48 kHz -> 16 kHz


def test_a_copy_nested_in_the_download_is_read_once(tmp_path):
    """Some redistributions nest a second full copy: each recording counts once, the extra
    files are reported, and no split can put one recording on both sides."""
    root = fx.ravdess(tmp_path / "ravdess")
    fx.ravdess(root / "audio_speech_actors_01-24")
    corpus = _load("ravdess", root, tmp_path)
    assert len(corpus) == 16 and len({u.path.name for u in corpus}) == 16
    assert (
        _reasons(corpus)["a second copy of a recording already read (same file name and speaker)"]
        == 16
    )
    for fold in ef.data.splits(corpus, "random", k=2):
        train = {corpus[i].path.name for i in fold.train.tolist()}
        assert not train & {corpus[i].path.name for i in fold.test.tolist()}


def test_broken_symbolic_links_are_reported(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    (root / "wav" / "16a01Wb.wav").symlink_to(tmp_path / "annex" / "not-fetched")
    corpus = _load("emodb", root, tmp_path)
    reason = "a broken symbolic link (its target is missing: annexed content not fetched?)"
    assert [s.path.name for s in corpus.skipped if s.reason == reason] == ["16a01Wb.wav"]
    assert "16a01Wb.wav" not in {u.path.name for u in corpus}


def test_cremad(tmp_path):
    corpus = _load("cremad", fx.cremad(tmp_path / "CREMA-D"), tmp_path)
    assert len(corpus) == 6 and corpus.speakers == ("1001", "1002", "1091")
    assert set(corpus.labels) == set(labels.CREMAD.values())
    first = corpus[0]
    assert (first.label, first.gender, first.metadata["sentence"]) == ("angry", "male", "DFA")
    assert {u.speaker: u.gender for u in corpus}["1091"] == "female"
    reasons = _reasons(corpus)
    assert reasons["unreadable audio: undecodable"] == 1  # the empty 1076_MTI_SAD_XX.wav
    assert sum(reasons.values()) == 2
    assert "1076_MTI_SAD_XX.wav" in str(corpus)


def test_tess_ignores_folder_spellings(tmp_path):
    corpus = _load("tess", fx.tess(tmp_path / "tess"), tmp_path)
    found = {u.path.relative_to(u.path.parents[1]).as_posix(): (u.speaker, u.label) for u in corpus}
    assert found == fx.TESS_FILES
    assert corpus.speakers == ("OAF", "YAF") and {u.gender for u in corpus} == {"female"}
    assert [s.path.name for s in corpus.skipped] == ["YAF_bean_bored.wav"]
    native = round(fx.DURATION * fx.TESS_RATE)  # 24 414 Hz -> 16 kHz
    assert corpus.waveforms.lengths.tolist() == [round(native * 16000 / fx.TESS_RATE)] * 8


def test_savee(tmp_path):
    corpus = _load("savee", fx.savee(tmp_path / "savee"), tmp_path)
    assert corpus.speakers == ("DC", "JE", "JK", "KL") and len(corpus) == 29
    assert set(corpus.labels) == set(labels.SAVEE.values())
    assert corpus.speaker_counts()["DC"] == 8
    codes = {u.path.stem: u.label for u in corpus if u.speaker == "JE"}
    assert codes == {
        "a01": "angry",
        "d01": "disgust",
        "f01": "fearful",
        "h01": "happy",
        "n01": "neutral",
        "sa01": "sad",
        "su01": "surprised",
    }
    assert [s.path.name for s in corpus.skipped] == ["x01.wav"]


def test_emovo_stereo_and_mono_48k(tmp_path):
    root = fx.emovo(tmp_path / "EMOVO")
    corpus = _load("emovo", root, tmp_path)
    assert len(corpus) == 42
    assert corpus.speakers == ("f1", "f2", "f3", "m1", "m2", "m3")
    by_code = {u.source_label: u.label for u in corpus}
    assert by_code == labels.EMOVO
    assert {u.speaker: u.gender for u in corpus}["m2"] == "male"
    assert _reasons(corpus)["actor in the name differs from its folder"] == 1
    assert len(corpus.skipped) == 2
    # Stereo and mono files of the same tone decode to the same mono waveform.
    waves = corpus.waveforms
    stereo = [i for i, u in enumerate(corpus) if fx.soundfile.info(u.path).channels == 2]
    mono = [i for i, u in enumerate(corpus) if fx.soundfile.info(u.path).channels == 1]
    assert stereo and mono
    torch.testing.assert_close(waves[stereo[0]], waves[mono[0]])
    assert waves.lengths.tolist() == [800] * 42


def test_iemocap_4class_default(tmp_path):
    root = fx.iemocap(tmp_path / "IEMOCAP_full_release")
    corpus = _load("iemocap", root, tmp_path)
    assert corpus.labels == ("neutral", "happy", "sad", "angry")
    got = {u.path.stem: (u.label, u.source_label) for u in corpus}
    assert got == {
        "Ses01F_impro01_F000": ("neutral", "neu"),
        "Ses01F_impro01_M000": ("happy", "exc"),
        "Ses01F_script01_1_M001": ("angry", "ang"),
        "Ses01F_script01_1_F003": ("happy", "hap"),
        "Ses02M_impro03_M000": ("sad", "sad"),
        "Ses02M_impro03_F000": ("happy", "exc"),
        "Ses02M_script02_2_M001": ("neutral", "neu"),
    }
    u = next(u for u in corpus if u.path.stem == "Ses01F_impro01_M000")
    assert (u.speaker, u.gender, u.metadata["session"], u.metadata["mode"]) == (
        "Ses01M",
        "male",
        1,
        "improvised",
    )
    assert u.metadata["dialog"] == "Ses01F_impro01" and u.metadata["valence"] == 2.5
    assert next(u for u in corpus if "script" in u.path.stem).metadata["mode"] == "scripted"
    assert corpus.speakers == ("Ses01F", "Ses01M", "Ses02F", "Ses02M")
    reasons = _reasons(corpus)
    assert reasons["label xxx (annotators without a majority)"] == 1
    assert reasons["label fru is outside the 4class label set"] == 1
    assert reasons["label oth is outside the 4class label set"] == 1
    assert reasons["label sur is outside the 4class label set"] == 1


def test_iemocap_full_label_set_and_missing_audio(tmp_path):
    root = fx.iemocap(tmp_path / "iemocap", missing_wav="Ses01F_script01_1_F002")
    corpus = _load("iemocap", root, tmp_path, label_set="full")
    assert corpus.labels == ("neutral", "happy", "sad", "angry", "surprised", "excited", "other")
    assert Counter(u.label for u in corpus)["excited"] == 2
    reasons = _reasons(corpus)
    assert reasons == {
        "label xxx (annotators without a majority)": 1,
        "labelled turn without its sentences/wav file": 1,
    }


def test_folder_and_csv(tmp_path):
    root = tmp_path / "mine"
    for label in ("angry", "calm"):
        for speaker in ("spk1", "spk2"):
            fx.tone(root / label / speaker / f"{speaker}_take1.flac", 22050)
    fx.tone(root / "stray.wav", 22050)
    corpus = _load("folder", root, tmp_path, speaker_pattern=r"(?P<speaker>spk\d)/")
    assert len(corpus) == 4 and corpus.labels == ("angry", "calm")
    assert corpus.speakers == ("spk1", "spk2")
    assert [s.reason for s in corpus.skipped] == ["audio file outside a label folder"]

    anonymous = _load("folder", root, tmp_path)
    assert {u.speaker for u in anonymous} == {None}
    assert "no speaker id: 4 utterances" in str(anonymous)

    manifest = root / "manifest.csv"
    manifest.write_text(
        "path,label,speaker,gender,take\n"
        "angry/spk1/spk1_take1.flac,angry,spk1,f,1\n"
        "calm/spk2/spk2_take1.flac,calm,spk2,m,1\n"
        "calm/spk2/gone.wav,calm,spk2,m,2\n"
        "angry/spk2/spk2_take1.flac,,spk2,m,1\n"
    )
    listed = _load("csv", manifest, tmp_path)
    assert [(u.label, u.speaker, u.gender, u.metadata) for u in listed] == [
        ("angry", "spk1", "female", {"take": "1"}),
        ("calm", "spk2", "male", {"take": "1"}),
    ]
    assert _reasons(listed) == {
        "listed in the manifest but missing": 1,
        "manifest row without a label": 1,
    }


# --- bad input ------------------------------------------------------------------------------


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match=r"name='emodbb': unknown corpus; known: emodb, ravdess"):
        load_corpus("emodbb", ".")
    assert ef.data.known_corpora() == (
        "emodb",
        "ravdess",
        "cremad",
        "tess",
        "savee",
        "emovo",
        "iemocap",
        "folder",
        "csv",
    )


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"root=.*nowhere.*no such file or folder"):
        load_corpus("ravdess", tmp_path / "nowhere")


def test_root_of_another_corpus(tmp_path):
    root = fx.savee(tmp_path / "savee")
    with pytest.raises(ef.data.CorpusLayoutError, match=r"not look like RAVDESS: expected Actor_"):
        load_corpus("ravdess", root)
    with pytest.raises(ef.data.CorpusLayoutError, match=r"CREMA-D: .*found no AudioWAV folder"):
        load_corpus("cremad", root)
    with pytest.raises(ef.data.CorpusLayoutError, match=r"IEMOCAP: .*no Session1..5 folder"):
        load_corpus("iemocap", root)
    with pytest.raises(ef.data.CorpusLayoutError, match=r"EmoDB: .*found no audio files"):
        load_corpus("emodb", root)
    with pytest.raises(ef.data.CorpusLayoutError, match=r"EMOVO: .*30 files, none matching"):
        load_corpus("emovo", root / "AudioData")


def test_bad_options(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['label_set'\]"):
        load_corpus("emodb", root, label_set="full")
    with pytest.raises(ValueError, match=r"sample_rate=0: expected a positive integer"):
        load_corpus("emodb", root, sample_rate=0)
    with pytest.raises(ValueError, match=r"label_set='6class': expected '4class' or 'full'"):
        load_corpus("iemocap", fx.iemocap(tmp_path / "iemocap"), label_set="6class")
    with pytest.raises(ValueError, match=r"speaker_pattern='\(': "):
        load_corpus("folder", tmp_path / "emodb", speaker_pattern="(")
    with pytest.raises(ef.data.CorpusLayoutError, match=r"csv manifest: .*a folder, not a file"):
        load_corpus("csv", root)
    with pytest.raises(ef.data.CorpusLayoutError, match=r"EmoDB: .*a file, not a folder"):
        load_corpus("emodb", root / "wav" / "03a01Wa.wav")
    assert repr(load_corpus("emodb", root, load_audio=False)) == (
        "Corpus(name='emodb', utterances=14, labels=7, speakers=2, skipped=1, audio not loaded)"
    )


def test_unreadable_audio_is_skipped_and_reported(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    folder = root / "wav"
    good = (folder / "03a01Wa.wav").read_bytes()
    fx.junk(folder / "03b01Wa.wav", b"")  # zero bytes
    fx.junk(folder / "03b02Wa.wav", good[:30])  # cut inside the header
    fx.junk(folder / "03b03Wa.wav", good[: len(good) // 2])  # cut inside the audio
    fx.junk(folder / "03b04Wa.wav", b"RIFF" + np.random.default_rng(0).bytes(200))  # garbage
    fx.tone(folder / "03b05Wa.wav", 16000)
    fx.junk(folder / "03b06Wa.wav", _empty_wav())  # a complete header, no samples
    corpus = _load("emodb", root, tmp_path)
    assert len(corpus) == 15 and len(corpus.waveforms) == 15
    assert _reasons(corpus) == {
        "unreadable audio: undecodable": 3,
        "unreadable audio: truncated": 1,
        "unreadable audio: zero-length": 1,
        "name is not SSTTTEV.wav (speaker 03..16, text a01..b10, emotion WLEAFTN, take a..z)": 1,
    }
    assert "3 x unreadable audio: undecodable: 03b01Wa.wav, 03b02Wa.wav" in str(corpus)
    # The failures are cached too: a second load reports the same without decoding.
    again = _load("emodb", root, tmp_path)
    assert again.cache_status == "hit" and again.skipped == corpus.skipped


def _empty_wav() -> bytes:
    import io

    buffer = io.BytesIO()
    fx.soundfile.write(buffer, fx.np.zeros(0, dtype="float32"), 16000, format="WAV")
    return buffer.getvalue()


# --- cache and waveforms --------------------------------------------------------------------


def test_cache_invalidated_when_a_file_changes(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    first = _load("emodb", root, tmp_path)
    assert first.cache_status == "miss" and first.waveforms.lengths[0] == 800
    path = first[0].path
    fx.soundfile.write(path, fx.np.zeros(1600, dtype="float32"), 16000)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = _load("emodb", root, tmp_path)
    assert second.cache_status == "miss" and second.waveforms.lengths[0] == 1600
    resampled = _load("emodb", root, tmp_path, sample_rate=8000)
    assert resampled.cache_status == "miss" and resampled.waveforms.lengths[0] == 800
    assert not list((tmp_path / "cache").glob("*.tmp")), "a temp file was left behind"


def test_corrupt_cache_is_rebuilt(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    first = _load("emodb", root, tmp_path)
    (cache_file,) = (tmp_path / "cache").glob("emodb-*.pt")
    for damage in (b"garbage", cache_file.read_bytes()[:1000]):
        cache_file.write_bytes(damage)
        again = _load("emodb", root, tmp_path)
        assert again.cache_status.startswith("rebuilt: corrupt")
        assert torch.equal(again.waveforms.data, first.waveforms.data)
    assert _load("emodb", root, tmp_path).cache_status == "hit"


KILL_DURING_CACHE_WRITE = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from emohrnet_fast.data import load_corpus

def half_then_hang(obj, f, *args, **kwargs):  # write part of the file, then get killed
    f.write(b"x" * 4096)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

torch.save = half_then_hang
load_corpus("emodb", {root!r}, cache_dir={cache!r}, progress=False)
"""


def test_kill_9_while_writing_the_cache(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    cache = tmp_path / "cache"
    script = KILL_DURING_CACHE_WRITE.format(
        tests=str(Path(__file__).parent), root=str(root), cache=str(cache)
    )
    process = subprocess.Popen(
        [sys.executable, "-P", "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    (leftover,) = cache.glob("*.tmp")  # the killed writer's temp file, never read
    assert not list(cache.glob("emodb-*.pt"))
    first = _load("emodb", root, tmp_path)  # the rerun decodes and finishes
    assert first.cache_status == "miss" and len(first.waveforms) == 14
    assert _load("emodb", root, tmp_path).cache_status == "hit"
    # Leftovers older than the stale limit are swept by the next write.
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    (cache_file,) = cache.glob("emodb-*.pt")
    cache_file.unlink()
    _load("emodb", root, tmp_path)
    assert not list(cache.glob("*.tmp"))


def test_cache_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOHRNET_CACHE", str(tmp_path / "env-cache"))
    assert ef.data.default_cache_dir() == tmp_path / "env-cache"
    load_corpus("emodb", fx.emodb(tmp_path / "emodb"), progress=False)
    assert len(list((tmp_path / "env-cache").glob("emodb-*.pt"))) == 1


def test_unwritable_cache_warns_and_loads(tmp_path):
    root = fx.emodb(tmp_path / "emodb")
    blocked = fx.junk(tmp_path / "a-file")  # cache_dir is a file: mkdir fails
    with pytest.warns(RuntimeWarning, match=r"cache_dir=.*a-file.*cannot write the cache"):
        corpus = load_corpus("emodb", root, cache_dir=blocked, progress=False)
    assert len(corpus.waveforms) == 14


def test_no_cache_and_metadata_only(tmp_path, capsys):
    root = fx.emodb(tmp_path / "emodb")
    corpus = load_corpus("emodb", root, cache=False, progress=False, cache_dir=tmp_path / "c")
    assert corpus.cache_status == "off" and not (tmp_path / "c").exists()
    assert capsys.readouterr().err == "", "progress=False must be quiet"
    meta = load_corpus("emodb", root, load_audio=False)
    assert meta.waveforms is None and len(meta) == 14


def test_padded_batches(tmp_path):
    root = tmp_path / "mine"
    for i, seconds in enumerate((0.01, 0.03, 0.02)):
        path = root / "x" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        fx.soundfile.write(path, fx.np.full(int(seconds * 16000), i + 1, "int16"), 16000)
    corpus = _load("folder", root, tmp_path)
    waves = corpus.waveforms
    assert waves.lengths.tolist() == [160, 480, 320]
    batch, lengths = waves.padded([2, 0])
    assert batch.shape == (2, 320) and lengths.tolist() == [320, 160]
    assert torch.equal(batch[1, :160], waves[0]) and not batch[1, 160:].any()
    cropped, cropped_lengths = waves.padded(max_length=200)
    assert cropped.shape == (3, 200) and cropped_lengths.tolist() == [160, 200, 200]
    assert [w.numel() for w in waves.as_list()] == [160, 480, 320]
    with pytest.raises(ValueError, match=r"max_length=0: expected None or an integer >= 1"):
        waves.padded(max_length=0)
    assert corpus.targets.tolist() == [0, 0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_speed_changed_crops_match_linear_interpolation(seed):
    """Each window reads ``length * speed`` source samples from where ``position`` puts it and
    resamples them linearly (numpy.interp is the reference); outside the utterance it is 0."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([0, 1, 7, 40, 101, 64])
    offsets = torch.cumsum(lengths, 0) - lengths
    waves = Waveforms(torch.randn(int(lengths.sum()), generator=generator), offsets, lengths, 16000)
    indices = torch.tensor([5, 4, 3, 2, 1, 0, 4])
    length = 50
    position = torch.rand(indices.numel(), generator=generator)
    speed = 0.5 + 1.5 * torch.rand(indices.numel(), generator=generator)
    batch, taken = waves.crops(indices, length, position, speed)
    assert batch.shape == (indices.numel(), length) and batch.dtype == torch.float32
    rows = zip(indices.tolist(), position.tolist(), speed.tolist(), strict=True)
    for row, (i, p, s) in enumerate(rows):
        clip = waves[i].double().numpy()
        n = clip.size
        span = int(np.floor(np.float32(length - 1) * np.float32(s))) + 1
        start = min(int(np.floor(p * (max(n - span, 0) + 1))), max(n - span, 0))
        source = np.arange(length, dtype=np.float32) * np.float32(s)
        inside = start + np.floor(source) < n
        wanted = np.zeros(length)
        if n:
            wanted[inside] = np.interp(start + source[inside], np.arange(n), clip)
        np.testing.assert_allclose(batch[row].numpy(), wanted, atol=2e-5)  # float32 positions
        assert taken[row] == inside.sum()
    same, same_taken = waves.crops(indices, length, position, torch.ones(indices.numel()))
    plain, plain_taken = waves.crops(indices, length, position)
    assert torch.equal(same, plain) and torch.equal(same_taken, plain_taken)
    with pytest.raises(ValueError, match=r"speed: expected shape \(7,\)"):
        waves.crops(indices, length, position, torch.ones(3))
