"""The tones-tiny trainer (``augment.audio.training.generator``)."""

from __future__ import annotations

import json
from collections import Counter

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from augment.audio.backends.tones_tiny import EMBEDDED_TONES_TINY
from augment.audio.pipelines.tones_tiny import (CHANNELS, LABEL_CHANNELS, PITCH_CHANNELS,
                                                TonesTinyPipeline, make_unet)
from augment.audio.training.generator import (_DeviceClips, draw_event, render_training_clips,
                                              train_tones_generator)
from augment.audio.world import CLASSES, DURATION_RANGE, PITCHES, PLANTED_SKEW
from augment.config.base import load_config
from augment.config.training import TrainTonesSpec
from augment.core.diffusion_training import noise_schedule

STAGE2 = Path(__file__).resolve().parents[4] / "configs" / "train" / "tones-tiny-stage2.yaml"
TRAINERS_OUT = "models/tones-tiny"
TINY = TrainTonesSpec(steps=2, batch_size=4, num_clips=16, warmup_steps=1,
                      block_out_channels=(8, 16), log_every=1)


def test_the_shipped_weights_are_stage_1_at_the_defaults_then_the_stage_2_recipe():
    stage1 = json.loads((EMBEDDED_TONES_TINY / "training_stage1.json").read_text())["recipe"]
    defaults = TrainTonesSpec().model_dump(mode="json")
    # fields added after stage 1 was trained (init_from, class_weights) read as their defaults
    assert {key: stage1.get(key, defaults[key]) for key in defaults} == defaults
    shipped = json.loads((EMBEDDED_TONES_TINY / "training.json").read_text())["recipe"]
    stage2 = load_config(STAGE2, TrainTonesSpec).model_dump(mode="json")
    assert {key: shipped[key] for key in stage2} == stage2
    assert stage2["init_from"] == TRAINERS_OUT  # stage 1's default --out


def test_class_weights_set_each_class_share_of_the_batches():
    clips = render_training_clips(0, 280)
    torch.manual_seed(0)
    pipe = TonesTinyPipeline(unet=make_unet((8, 16)), scheduler=noise_schedule())
    spec = TINY.model_copy(update={"batch_size": 500, "class_weights": {"am_tone": 3.0}})
    data = _DeviceClips(clips, pipe, spec, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    counts = Counter()
    for _ in range(8):
        _, cond = data.batch(spec.model_copy(update={"condition_dropout": 0.0}), gen)
        counts.update(CLASSES[i] for i in cond[:, :len(CLASSES)].amax((2, 3)).argmax(1).tolist())
    total = sum(counts.values())
    present = Counter(CLASSES[i] for i in clips.classes.tolist())
    weight = {c: 3.0 if c == "am_tone" else 1.0 for c in CLASSES}
    mass = sum(weight[c] * present[c] for c in CLASSES)
    for c in CLASSES:
        assert abs(counts[c] / total - weight[c] * present[c] / mass) < 0.03, c


def test_a_second_stage_starts_from_the_first_stages_weights(tmp_path):
    first = train_tones_generator(TINY, tmp_path / "first")
    still = TINY.model_copy(update={"seed": 1, "learning_rate": 1e-12, "init_from": str(first)})
    second = unet_weights(train_tones_generator(still, tmp_path / "second"))
    fresh = unet_weights(train_tones_generator(TINY.model_copy(update={"seed": 1}),
                                               tmp_path / "fresh"))
    before = unet_weights(first)
    assert all(torch.allclose(second[k].float(), before[k].float(), atol=1e-3) for k in before)
    assert not all(torch.allclose(fresh[k].float(), before[k].float(), atol=1e-3) for k in before)
    wider = TINY.model_copy(update={"block_out_channels": (8, 24), "init_from": str(first)})
    with pytest.raises(ValueError, match="does not match the recipe's architecture"):
        train_tones_generator(wider, tmp_path / "wider")


def test_training_clips_follow_the_planted_skew():
    draws = [draw_event(0, i) for i in range(3000)]
    assert draw_event(0, 7) == draws[7]  # a clip regenerates alone
    assert all(DURATION_RANGE[0] <= d.duration <= DURATION_RANGE[1] for d in draws)
    beeps = Counter(d.pitch for d in draws if d.label == "beep")
    others = Counter(d.pitch for d in draws if d.label != "beep")
    share = beeps["high"] / sum(beeps.values())
    assert abs(share - PLANTED_SKEW["beep"]["high"]) < 0.06
    assert abs(others["high"] / sum(others.values()) - 1 / 3) < 0.04
    assert set(Counter(d.label for d in draws)) == set(CLASSES)


def test_training_clips_are_canvas_log_mels_with_their_labels():
    clips = render_training_clips(3, 8)
    assert clips.log_mels.shape == (8, 64, 128) and clips.log_mels.dtype == np.float16
    for i in range(8):
        d = draw_event(3, i)
        assert CLASSES[clips.classes[i]] == d.label and PITCHES[clips.pitches[i] - 1] == d.pitch
        f = clips.frames[i]
        loud = clips.log_mels[i].astype(np.float32).max(0)  # (T,) loudest mel per frame
        assert loud[:f].max() > 0 and loud[f + 3:].max() < -11  # energy only in the event's frames


def test_batches_drop_the_pitch_and_all_labels_at_their_rates():
    clips = render_training_clips(0, 32)
    torch.manual_seed(0)
    pipe = TonesTinyPipeline(unet=make_unet((8, 16)), scheduler=noise_schedule())
    spec = TINY.model_copy(update={"batch_size": 250, "pitch_dropout": 0.3,
                                   "condition_dropout": 0.1})
    data = _DeviceClips(clips, pipe, spec, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    has_class, has_pitch = [], []
    for _ in range(8):  # 2000 clips in batches that fit in memory
        x0, cond = data.batch(spec, gen)
        assert x0.shape == (250, 1, 64, 128) and x0.min() >= -1 and x0.max() <= 1
        assert cond.shape == (250, len(CHANNELS), 64, 128)
        assert (cond[:, CHANNELS.index("activity")].amax((1, 2)) > 0).all()  # survives dropout
        labelled = cond[:, :len(CLASSES)].amax((1, 2, 3)) > 0
        assert cond[:, :LABEL_CHANNELS][~labelled].abs().sum() == 0  # all labels dropped together
        has_class.append(labelled)
        has_pitch.append(cond[:, PITCH_CHANNELS].amax((1, 2, 3)) > 0)
    has_class, has_pitch = torch.cat(has_class), torch.cat(has_pitch)
    assert abs((~has_class).float().mean() - 0.1) < 0.03
    assert abs((~has_pitch).float().mean() - (1 - 0.9 * 0.7)) < 0.04
    assert not (has_pitch & ~has_class).any()  # no pitch without its class


def unet_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(next((folder / "unet").glob("*.safetensors")))


def test_training_is_byte_identical_for_a_seed_and_saves_an_fp16_pipeline(tmp_path):
    runs = {name: unet_weights(train_tones_generator(TINY.model_copy(update={"seed": seed}),
                                                     tmp_path / name))
            for name, seed in (("a", 0), ("again", 0), ("other", 1))}
    assert {t.dtype for t in runs["a"].values()} == {torch.float16}
    assert runs["a"].keys() == runs["again"].keys()
    assert all(torch.equal(runs["a"][k], runs["again"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["other"][k]) for k in runs["a"])
    log = (tmp_path / "a" / "training_log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 1 + TINY.steps
    pipe = TonesTinyPipeline.from_pretrained(tmp_path / "a")
    assert pipe.scheduler.config.thresholding  # x0 clipping travels with the model
    assert pipe.scheduler.config.prediction_type == TINY.prediction_type
    report = json.loads((tmp_path / "a" / "training.json").read_text())
    assert report["recipe"]["pitch_skew"] == PLANTED_SKEW
