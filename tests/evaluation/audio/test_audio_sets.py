"""Audio sets: the reader decodes any rate and channel count to 16 kHz mono and refuses corrupt
bytes; dataset folders carry events, captions and groups; a corrupt file is listed, not fatal."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from evaluation.audio.sets import AudioSet, decode_audio
from evaluation.evaluate import evaluate_dataset
from evaluation.sets import DecodeError, open_set


def wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_the_reader_gives_16khz_mono_float32():
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    same = decode_audio(wav_bytes(np.stack([tone, tone], 1), 16000))
    assert same.dtype == torch.float32 and same.shape == (8000,)
    np.testing.assert_allclose(same.numpy(), tone, atol=1e-6)
    resampled = decode_audio(wav_bytes(tone, 8000)).numpy()
    assert resampled.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins over 1 s
    for bad in (b"RIFF\x00\x00garbage", b"", wav_bytes(np.zeros(0, np.float32), 16000)):
        with pytest.raises(DecodeError):
            decode_audio(bad)


def test_a_dataset_folder_opens_with_its_events_captions_and_groups(tones_scapes):
    audio_set = open_set(tones_scapes)
    assert isinstance(audio_set, AudioSet) and audio_set.modality == "audio"
    assert len(audio_set) == 24 and all(f.suffix == ".wav" for f in audio_set.files)
    assert audio_set.classes == json.loads((tones_scapes / "dataset.json").read_text())["categories"]
    first = audio_set.events[0]
    assert first and all(0 <= e["onset"] < e["offset"] <= 4.0 for e in first)
    for group, members in audio_set.groups.items():
        if group.startswith("class="):
            label = group.split("=", 1)[1]
            assert all(any(e["label"] == label for e in audio_set.events[m]) for m in members)
    assert audio_set.captions[0] and "events" in audio_set.labels()


def test_a_plain_folder_opens_and_a_corrupt_file_is_listed_not_fatal(tones_scapes, tmp_path,
                                                                   audio_spec):
    folder = tmp_path / "wavs"
    shutil.copytree(tones_scapes / "audio", folder)
    (folder / "zz-broken.wav").write_bytes(b"RIFF this is not audio")
    audio_set = open_set(folder)
    assert isinstance(audio_set, AudioSet) and audio_set.events is None and len(audio_set) == 25
    result = evaluate_dataset(folder, audio_spec(metrics=["audio_is"]))
    table = result.figures
    unreadable = table[table.metric == "unreadable_audio"].iloc[0]
    assert unreadable.value == 1 and "zz-broken.wav" in unreadable.details
    assert table[table.metric == "audio_is"].n.iloc[0] == 24
    assert "unreadable_images" not in set(table.metric)
