"""The tones classifier: embedded weights on unseen real clips, the verifier, windows, save/load."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.classifier import (LABELS, TonesClassifier, classify, clip_scores,
                                      event_windows, fit_to_window, load_classifier,
                                      save_classifier)
from augment.audio.mixing import event_samples
from augment.audio.soundscape import Event
from augment.audio.world import (BACKGROUNDS, CLASSES, DURATION_RANGE, PITCHES, SAMPLE_RATE,
                                 db_to_gain, render_background, render_event, sample_frequency)

UNSEEN_SEED = 9_876  # neither the training seed (0) nor the held-out one (1)


@pytest.fixture(scope="module")
def embedded() -> TonesClassifier:
    return load_classifier()


def _events(seed: int, count: int) -> list[Event]:
    """``count`` events cycling through every class and pitch band, random frequency, duration and
    texture seed, each at onset 0 (as a backend's clip holds it)."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(count):
        label, pitch = CLASSES[i % len(CLASSES)], PITCHES[(i // len(CLASSES)) % len(PITCHES)]
        duration = round(rng.uniform(*DURATION_RANGE) * SAMPLE_RATE) / SAMPLE_RATE
        events.append(Event(label, pitch, sample_frequency(pitch, rng), 0.0, duration, 0.0,
                            int(rng.integers(2**31))))
    return events


def _clips(events: list[Event], gains_db: np.ndarray) -> np.ndarray:
    """float32 (E, CLIP_SAMPLES): each event rendered by the world at its gain, silence after."""
    clips = np.zeros((len(events), CLIP_SAMPLES), dtype=np.float32)
    for row, (event, gain) in enumerate(zip(events, gains_db)):
        sound = render_event(event.label, event.frequency, event.duration, event.seed)
        clips[row, :len(sound)] = sound * db_to_gain(gain)
    return clips


def test_embedded_classifier_recognises_unseen_real_clips(embedded):
    events = _events(UNSEEN_SEED, 7 * 3 * 14)  # 294 clips, 14 per class and pitch band
    gains = np.random.default_rng(UNSEEN_SEED).uniform(-20.0, 6.0, len(events))
    probs = classify(embedded, _clips(events, gains))
    class_pred = np.array(LABELS)[probs["class_probs"].argmax(1)]
    pitch_pred = np.array(PITCHES)[probs["pitch_probs"].argmax(1)]
    assert np.mean(class_pred == [e.label for e in events]) >= 0.97
    assert np.mean(pitch_pred == [e.pitch for e in events]) >= 0.97


def test_background_only_clips_are_called_background(embedded):
    rng = np.random.default_rng(UNSEEN_SEED)
    clips = []
    for kind in BACKGROUNDS:
        for seconds in (2.048, 1.0, 0.5):  # a whole window, or a shorter one padded by classify
            for _ in range(4):
                noise = render_background(kind, seconds, int(rng.integers(2**31)))
                clips.append(np.pad(noise * db_to_gain(rng.uniform(-25.0, 0.0)),
                                    (0, CLIP_SAMPLES - len(noise))))
    pred = np.array(LABELS)[classify(embedded, np.stack(clips))["class_probs"].argmax(1)]
    assert np.mean(pred == "background") >= 0.95, dict(zip(*np.unique(pred, return_counts=True)))


def test_clip_scores_classify_each_events_own_samples(embedded):
    events = _events(UNSEEN_SEED + 1, 14)
    events[3] = Event(events[3].label, None, events[3].frequency, 0.0, events[3].duration, 0.0, 5)
    clips = _clips(events, np.zeros(len(events)))
    for row, event in enumerate(events):  # loud noise after each event must not count
        n = round(event.duration * SAMPLE_RATE)
        clips[row, n:] = np.random.default_rng(row).uniform(-0.9, 0.9, CLIP_SAMPLES - n)
    scores = clip_scores(embedded, clips, events)
    for row, (event, score) in enumerate(zip(events, scores)):
        alone = classify(embedded, event_samples(clips[row], event.duration, SAMPLE_RATE)[None])
        assert score["verify_class"] == pytest.approx(
            alone["class_probs"][0, LABELS.index(event.label)], abs=1e-5)
        assert score["class_pred"] == LABELS[alone["class_probs"][0].argmax()]
        assert score["pitch_pred"] == PITCHES[alone["pitch_probs"][0].argmax()]
        assert score["pitch_ok"] == (None if event.pitch is None
                                     else score["pitch_pred"] == event.pitch)
    assert scores[3]["pitch_ok"] is None
    assert np.mean([s["class_pred"] == e.label for s, e in zip(scores, events)]) >= 0.9


def test_clip_scores_mark_a_failed_clip_and_keep_the_others(embedded):
    events = _events(UNSEEN_SEED + 2, 3)
    clips = _clips(events, np.zeros(3))
    clips[1] = np.nan
    scores = clip_scores(embedded, clips, events)
    assert scores[1] == {"verify_class": None, "class_pred": None, "pitch_pred": None,
                         "pitch_ok": None}
    assert scores[0] == clip_scores(embedded, clips[[0, 2]], [events[0], events[2]])[0]
    with pytest.raises(ValueError, match="2 clips for 3 events"):
        clip_scores(embedded, clips[:2], events)


def test_event_windows_are_the_mixers_samples_zero_padded():
    events = _events(3, 2)
    clips = np.random.default_rng(0).uniform(-1, 1, (2, CLIP_SAMPLES)).astype(np.float32)
    windows = event_windows(clips, events, CLIP_SAMPLES)
    for row, event in enumerate(events):
        own = event_samples(clips[row], event.duration, SAMPLE_RATE)
        assert np.allclose(windows[row, :len(own)], own) and not windows[row, len(own):].any()


def test_fit_to_window_pads_the_end_and_crops_the_centre():
    waves = torch.arange(20, dtype=torch.float32).reshape(2, 10)
    assert torch.equal(fit_to_window(waves, 13), torch.nn.functional.pad(waves, (0, 3)))
    assert torch.equal(fit_to_window(waves, 6), waves[:, 2:8])
    assert torch.equal(fit_to_window(waves.numpy(), 10), waves)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        fit_to_window(waves[0], 10)


def test_classify_shapes_and_batch_size_invariance():
    torch.manual_seed(0)
    model = TonesClassifier(widths=(4, 8), feature_dim=12).eval()
    waves = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 9000)).astype(np.float32)
    full = classify(model, waves, batch_size=64)
    assert {k: v.shape for k, v in full.items()} == {
        "class_probs": (5, len(LABELS)), "pitch_probs": (5, len(PITCHES)), "features": (5, 12)}
    assert all(v.dtype == np.float32 for v in full.values())
    assert np.allclose(full["class_probs"].sum(1), 1.0, atol=1e-5)
    for key, value in classify(model, torch.from_numpy(waves), batch_size=2).items():
        assert np.allclose(value, full[key], atol=1e-5), key
    padded = np.pad(waves, ((0, 0), (0, CLIP_SAMPLES - 9000)))
    assert np.allclose(classify(model, padded)["features"], full["features"], atol=1e-5)
    assert classify(model, np.zeros((0, 100)))["features"].shape == (0, 12)


@pytest.mark.parametrize("damage, error, name", [
    ("delete", FileNotFoundError, "config.json"),
    ("delete", FileNotFoundError, "model.safetensors"),
    ("truncate", ValueError, "model.safetensors"),
    ("unknown key", ValueError, "config.json"),
])
def test_missing_or_corrupt_files_are_named(tmp_path, damage, error, name):
    save_classifier(TonesClassifier(widths=(4, 8), feature_dim=8), tmp_path)
    target = tmp_path / name
    if damage == "delete":
        target.unlink()
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.write_text(json.dumps({"widths": [4, 8], "depth": 3}))
    with pytest.raises(error, match=re.escape(str(target))):
        load_classifier(tmp_path)


def test_too_many_levels_for_the_mel_bands_is_an_error():
    with pytest.raises(ValueError, match="widths"):
        TonesClassifier(widths=(4,) * 8)
