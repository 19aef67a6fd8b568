"""The tones classifier trainer (``augment.audio.training.classifier``) and its recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from typer.testing import CliRunner

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.classifier import EMBEDDED_CLASSIFIER, LABELS, classify, load_classifier
from augment.audio.training.classifier import (HELD_OUT_SETTINGS, NO_PITCH, ClipArrays,
                                               accuracy_figures, draw_clip, render_clip,
                                               render_clips, render_log_mels, render_parallel,
                                               train_tones_classifier)
from augment.audio.world import PITCHES
from augment.config.training import TrainTonesClassifierSpec
from flows.train_cli import train_app

TINY = dict(num_clips=24, steps=3, batch_size=8, widths=(4, 8), feature_dim=8, eval_clips=6,
            griffin_lim_iters=(1, 2), log_every=2)


def test_spec_defaults_are_the_recipe_of_the_shipped_weights():
    report = json.loads((EMBEDDED_CLASSIFIER / "training.json").read_text())
    recipe, defaults = report["recipe"], TrainTonesClassifierSpec().model_dump(mode="json")
    assert recipe.keys() - defaults.keys() == {"window", "event_duration", "backgrounds"}
    assert {key: recipe[key] for key in defaults} == defaults
    for name in HELD_OUT_SETTINGS:
        assert report["held_out"][name]["class_accuracy"] >= 0.97, name
        assert report["held_out"][name]["pitch_accuracy"] >= 0.97, name
    assert (EMBEDDED_CLASSIFIER / "model.safetensors").stat().st_size < 2_000_000


def test_tiny_recipe_trains_deterministically_and_round_trips(tmp_path):
    spec = TrainTonesClassifierSpec(**TINY)
    report = train_tones_classifier(spec, tmp_path / "a", workers=1)
    train_tones_classifier(spec, tmp_path / "b", workers=1)
    assert json.loads((tmp_path / "a" / "training.json").read_text()) == report
    assert report["recipe"]["steps"] == 3 and report["loss_curve"][-1]["step"] == 3
    assert set(report["held_out"]) == set(HELD_OUT_SETTINGS)
    assert all(0.0 <= figures["class_accuracy"] <= 1.0 for figures in report["held_out"].values())
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in "ab"]
    assert weights[0] == weights[1]
    stored = load_file(tmp_path / "a" / "model.safetensors")
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    loaded = load_classifier(tmp_path / "a")
    assert loaded.config == {"widths": [4, 8], "feature_dim": 8, "window": CLIP_SAMPLES,
                             "num_classes": len(LABELS), "num_pitches": len(PITCHES)}


def test_clip_draws_are_reproducible_and_settings_keep_the_event():
    spec = TrainTonesClassifierSpec()
    assert draw_clip(spec, 3, 17) == draw_clip(spec, 3, 17) != draw_clip(spec, 3, 18)
    draws = [draw_clip(spec, 3, i) for i in range(200)]
    clean = spec.model_copy(update=HELD_OUT_SETTINGS["clean"])
    for i, draw in enumerate(draws):
        other = draw_clip(clean, 3, i)
        assert other.label in (draw.label, *LABELS[1:]) and other.seed == draw.seed
        assert other.background is None and other.griffin_lim_iters == 0 and other.onset == 0
        assert other.content == CLIP_SAMPLES
    assert {d.label for d in draws} == set(LABELS)
    assert {d.background is None for d in draws} == {True, False}
    assert {d.griffin_lim_iters > 0 for d in draws} == {True, False}
    assert all(d.pitch is None for d in draws if d.label == "background")


def test_rendered_clips_put_sound_only_where_the_record_says():
    spec = TrainTonesClassifierSpec(griffin_lim_share=0.0, mixed_share=0.0, background_share=0.0,
                                    gain_db=(0.0, 0.0), window_share=0.5)
    for i in range(20):
        draw = draw_clip(spec, 5, i)
        wave = render_clip(draw)
        first, last = max(draw.onset, 0), min(draw.onset + draw.samples, draw.content)
        loud = np.flatnonzero(np.abs(wave) > 1e-6)
        assert wave.dtype == np.float32 and wave.shape == (CLIP_SAMPLES,)
        assert first <= loud.min() and loud.max() < last, draw
    background = TrainTonesClassifierSpec(background_share=1.0, griffin_lim_share=0.0,
                                          window_share=1.0)
    draw = draw_clip(background, 5, 0)
    wave = render_clip(draw)
    assert draw.label == "background" and np.abs(wave[:draw.content]).max() > 0
    assert not wave[draw.content:].any()


def test_render_parallel_gives_the_same_clips_whatever_the_workers():
    spec = TrainTonesClassifierSpec(griffin_lim_iters=(1, 3))
    serial = render_parallel(render_log_mels, spec, 2, 10, workers=1, chunk=4)
    parallel = render_parallel(render_log_mels, spec, 2, 10, workers=2, chunk=4)
    for field in ("x", "labels", "pitches"):
        assert np.array_equal(getattr(serial, field), getattr(parallel, field)), field
    waves = render_clips(spec, 2, 4, 3)
    assert np.array_equal(waves.labels, serial.labels[4:7])
    assert np.array_equal(waves.pitches, serial.pitches[4:7])
    assert serial.x.dtype == np.float16 and serial.x.shape[:2] == (10, 64)


def test_accuracy_figures_against_hand_counts():
    clips = ClipArrays(np.zeros((4, 1)), np.array([0, 1, 1, 2]), np.array([NO_PITCH, 0, 2, 1]))
    class_probs = np.eye(len(LABELS))[[0, 1, 2, 2]]
    pitch_probs = np.eye(len(PITCHES))[[2, 0, 2, 0]]
    figures = accuracy_figures(class_probs, pitch_probs, clips)
    assert figures["class_accuracy"] == 0.75
    assert figures["pitch_accuracy"] == pytest.approx(2 / 3)  # the background's pitch is ignored
    assert figures["per_class_accuracy"] == {"background": 1.0, LABELS[1]: 0.5, LABELS[2]: 1.0}
    assert (figures["num_clips"], figures["num_event_clips"]) == (4, 3)


def test_recipe_rejects_reversed_ranges_naming_the_field():
    with pytest.raises(ValidationError, match="snr_db"):
        TrainTonesClassifierSpec(snr_db=(10.0, 0.0))
    with pytest.raises(ValidationError, match="griffin_lim_iters"):
        TrainTonesClassifierSpec(griffin_lim_iters=(0, 4))


def test_cli_trains_a_tiny_classifier(tmp_path):
    as_yaml = {key: list(value) if isinstance(value, tuple) else value
               for key, value in TINY.items()}
    overrides = [arg for key, value in as_yaml.items() for arg in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(train_app, ["tones-classifier", "--out", str(tmp_path),
                                            "--seed", "4", *overrides])
    assert result.exit_code == 0, result.output
    assert "held-out class / pitch accuracy" in result.output
    report = json.loads((tmp_path / "training.json").read_text())
    assert report["recipe"]["seed"] == 4 and report["held_out"]["clean"]["seed"] == 5
    model = load_classifier(tmp_path)
    assert classify(model, np.zeros((2, 1000)))["features"].shape == (2, 8)
