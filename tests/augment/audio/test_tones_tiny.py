"""The tones-tiny pipeline and backend: tiny random UNets for the mechanics, the shipped weights for
real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.backends.tones_tiny import EMBEDDED_TONES_TINY, TonesTinyBackend, load
from augment.audio.pipelines.tones_tiny import (CHANNELS, COND_CHANNELS, FRAMES, LABEL_CHANNELS,
                                                TonesTinyPipeline, active_frames, band_rows,
                                                encode_events, from_patches, make_unet,
                                                mel_centres, null_condition, to_patches)
from augment.audio.soundscape import Event
from augment.audio.spectrogram import N_MELS
from augment.audio.world import CLASSES, PITCH_BANDS, PITCHES
from augment.config.audio import AudioSamplerSpec, TonesTinySpec
from augment.core.diffusion_training import noise_schedule
from augment.core.schedulers import SCHEDULER_CLASSES, make_scheduler


def event(label="beep", pitch="mid", duration=0.5, seed=0) -> Event:
    return Event(label, pitch, None, 0.0, duration, 10.0, seed)


EVENTS = [event("beep", "high", 0.5), event("am_tone", None, 1.5), event("click_train", "low", 0.2)]


@pytest.fixture(scope="module")
def tiny_pipe():
    torch.manual_seed(0)
    unet = make_unet(block_out_channels=(8, 16), layers_per_block=1)
    scheduler = make_scheduler("ddim", noise_schedule("v_prediction"))
    pipe = TonesTinyPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_condition_encodes_class_pitch_rows_and_activity():
    cond = encode_events(EVENTS)
    assert cond.shape == (3, COND_CHANNELS, N_MELS, FRAMES) and cond.dtype == torch.float32
    frames = [active_frames(e.duration) for e in EVENTS]
    assert frames == [32, 94, 13]  # ceil(samples / 256)
    for b, (e, f) in enumerate(zip(EVENTS, frames)):
        activity = cond[b, CHANNELS.index("activity")]
        assert torch.all(activity[:, :f] == 1) and torch.all(activity[:, f:] == 0)
        progress = cond[b, CHANNELS.index("progress")]
        torch.testing.assert_close(progress[5, :f], (torch.arange(f) + 0.5) / f)
        assert torch.all(progress[:, f:] == 0) and torch.equal(progress[0], progress[-1])
        labels = cond[b, :LABEL_CHANNELS]
        assert torch.all(labels[:, :, f:] == 0)  # labels only where the event sounds
        assert torch.all(cond[b, CHANNELS.index(f"class:{e.label}"), :, :f] == 1)
        assert cond[b, :len(CLASSES), 0, 0].sum() == 1
        pitch = cond[b, len(CLASSES):len(CLASSES) + len(PITCHES), 0, 0]
        rows = cond[b, CHANNELS.index("band_rows"), :, 0]
        if e.pitch is None:  # unspecified: no pitch information at all
            assert pitch.sum() == 0 and rows.sum() == 0
        else:
            assert pitch.tolist() == [float(p == e.pitch) for p in PITCHES]
            lo, hi = PITCH_BANDS[e.pitch]
            centres = mel_centres()[rows.bool()]
            assert rows.sum() > 0 and centres.min() >= lo and centres.max() <= hi
    position = cond[:, CHANNELS.index("mel_position")]
    assert position[:, 0].eq(-1).all() and position[:, -1].eq(1).all()


def test_band_rows_are_disjoint_and_ordered_low_to_high():
    rows = band_rows()
    assert rows.shape == (len(PITCHES), N_MELS) and rows.sum(0).max() == 1
    first = [int(r.nonzero()[0]) for r in rows]
    assert first == sorted(first)


def test_null_condition_drops_the_labels_and_keeps_where_the_event_is():
    cond = encode_events(EVENTS)
    null = null_condition(cond)
    assert torch.all(null[:, :LABEL_CHANNELS] == 0)
    assert torch.equal(null[:, LABEL_CHANNELS:], cond[:, LABEL_CHANNELS:])


def test_unknown_labels_are_rejected():
    with pytest.raises(ValueError, match="unknown class or pitch band"):
        encode_events([event("meow")])
    with pytest.raises(ValueError, match="unknown class or pitch band"):
        encode_events([event(pitch="ultrasonic")])


def test_output_shape_dtype_range_and_determinism(tiny_pipe):
    cond = encode_events(EVENTS[:2])
    a = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2])).log_mels
    b = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2])).log_mels
    c = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 3])).log_mels
    assert a.shape == (2, N_MELS, FRAMES) and a.dtype == torch.float32
    lo, hi = tiny_pipe.denormalise(torch.tensor([-1.0, 1.0]))
    assert a.min() >= lo - 1e-5 and a.max() <= hi + 1e-5
    assert torch.equal(a, b)
    assert not torch.allclose(a[1], c[1])  # another seed, another sample
    as_numpy = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2]), output_type="np")
    assert isinstance(as_numpy.log_mels, np.ndarray)


def test_one_generator_per_sample_makes_a_sample_reproducible_alone(tiny_pipe):
    cond = encode_events(EVENTS)
    batch = tiny_pipe(cond, num_inference_steps=2, generator=gens([5, 6, 7])).log_mels
    alone = tiny_pipe(cond[1:2], num_inference_steps=2, generator=gens([6])).log_mels
    torch.testing.assert_close(batch[1], alone[0], atol=1e-4, rtol=0)


def test_guidance_changes_the_output_and_one_means_no_guidance(tiny_pipe):
    cond = encode_events(EVENTS[:1])
    outs = {g: tiny_pipe(cond, num_inference_steps=2, guidance_scale=g,
                         generator=gens([0])).log_mels for g in (1.0, 3.0)}
    assert not torch.allclose(outs[1.0], outs[3.0])
    calls = []
    hook = tiny_pipe.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        tiny_pipe(cond, num_inference_steps=2, guidance_scale=1.0, generator=gens([0]))
        tiny_pipe(cond, num_inference_steps=2, guidance_scale=3.0, generator=gens([0]))
    finally:
        hook.remove()
    assert calls == [1, 1, 2, 2]  # no unconditional pass without guidance


def test_noise_temperature_scales_the_initial_noise(tiny_pipe):
    cond = encode_events(EVENTS[:1])
    hot = tiny_pipe(cond, num_inference_steps=1, noise_temperature=1.0, generator=gens([0]))
    cold = tiny_pipe(cond, num_inference_steps=1, noise_temperature=0.2, generator=gens([0]))
    assert not torch.allclose(hot.log_mels, cold.log_mels)


@pytest.mark.parametrize("name", sorted(SCHEDULER_CLASSES))
def test_every_scheduler_samples_with_the_training_schedule(tiny_pipe, name):
    scheduler = make_scheduler(name, tiny_pipe.scheduler)
    pipe = TonesTinyPipeline(unet=tiny_pipe.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == SCHEDULER_CLASSES[name][0]
    assert pipe.scheduler.config.beta_schedule == tiny_pipe.scheduler.config.beta_schedule
    log_mels = pipe(encode_events(EVENTS[:2]), num_inference_steps=3, eta=0.5,
                    generator=gens([0, 1])).log_mels
    assert log_mels.shape == (2, N_MELS, FRAMES) and torch.isfinite(log_mels).all()


def test_patches_are_a_lossless_rearrangement_and_a_patch_model_samples():
    cond = encode_events(EVENTS)
    assert torch.equal(from_patches(to_patches(cond, 2), 2), cond)
    assert to_patches(cond, 2).shape == (3, 4 * COND_CHANNELS, N_MELS // 2, FRAMES // 2)
    torch.manual_seed(0)
    unet = make_unet(block_out_channels=(8, 16), patch_size=2)
    pipe = TonesTinyPipeline(unet=unet, scheduler=noise_schedule("v_prediction"), patch_size=2)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(cond, num_inference_steps=2, generator=gens([0, 1, 2])).log_mels
    assert out.shape == (3, N_MELS, FRAMES) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="patch_size 1 needs 1"):
        TonesTinyPipeline(unet=unet, scheduler=noise_schedule(), patch_size=1)(cond)


def test_check_inputs_rejects_bad_calls(tiny_pipe):
    cond = encode_events(EVENTS[:2])
    with pytest.raises(ValueError, match="condition"):
        tiny_pipe(cond[:, :5])
    with pytest.raises(ValueError, match="condition"):
        tiny_pipe(cond[..., :64])
    with pytest.raises(ValueError, match="one per sample"):
        tiny_pipe(cond, generator=gens([1]))
    with pytest.raises(ValueError, match="num_inference_steps"):
        tiny_pipe(cond, num_inference_steps=0)
    with pytest.raises(ValueError, match="output_type"):
        tiny_pipe(cond, output_type="pil")


def test_save_and_load_round_trip_keeps_weights_and_settings(tiny_pipe, tmp_path):
    pipe = TonesTinyPipeline(unet=tiny_pipe.unet, scheduler=tiny_pipe.scheduler,
                             log_mel_centre=-4.0, log_mel_scale=7.5)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "p", safe_serialization=True)
    assert list((tmp_path / "p" / "unet").glob("*.safetensors"))
    assert not list((tmp_path / "p").rglob("*.bin"))
    again = TonesTinyPipeline.from_pretrained(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    assert (again.config.log_mel_centre, again.config.log_mel_scale) == (-4.0, 7.5)
    cond = encode_events(EVENTS[:2])
    torch.testing.assert_close(pipe(cond, num_inference_steps=2, generator=gens([1, 2])).log_mels,
                               again(cond, num_inference_steps=2, generator=gens([1, 2])).log_mels,
                               atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def tiny_backend(tiny_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tones") / "tiny"
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return load(TonesTinySpec(path=str(folder)))


SAMPLER = AudioSamplerSpec(scheduler="ddim", steps=2, batch_size=2)


def test_backend_renders_float32_clips_silent_after_the_event(tiny_backend):
    clips = tiny_backend.render(EVENTS, SAMPLER, [1, 2, 3])
    assert clips.shape == (3, CLIP_SAMPLES) and clips.dtype == np.float32
    assert np.abs(clips).max() <= 1
    for clip, e in zip(clips, EVENTS):
        n = int(round(e.duration * 16000))
        assert np.abs(clip[:n]).max() > 0 and not clip[n:].any()
    assert tiny_backend.prompt(EVENTS[0], SAMPLER) is None
    assert len(tiny_backend.weights) == 16


def test_backend_clip_depends_on_its_seed_only(tiny_backend):
    batch = tiny_backend.render(EVENTS, SAMPLER, [1, 2, 3])
    alone = tiny_backend.render(EVENTS[2:], SAMPLER, [3])
    again = tiny_backend.render(EVENTS[2:], SAMPLER, [3])
    other = tiny_backend.render(EVENTS[2:], SAMPLER, [4])
    np.testing.assert_allclose(batch[2], alone[0], atol=1e-4)
    assert np.array_equal(alone, again) and not np.allclose(alone, other)


def test_backend_marks_non_finite_clips_as_nan_rows(tiny_backend):
    from augment.audio.backends.tones_tiny import log_mels_to_clips

    log_mels = torch.full((2, N_MELS, FRAMES), -11.5)
    log_mels[1, 3, 4] = float("nan")
    clips = log_mels_to_clips(log_mels, EVENTS[:2], [0, 1])
    assert np.isfinite(clips[0]).all() and np.isnan(clips[1]).all()


def test_missing_weights_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="tones-tiny weights"):
        load(TonesTinySpec(path=str(tmp_path)))


def test_shipped_weights_load_and_generate():
    backend = load(TonesTinySpec())
    assert isinstance(backend, TonesTinyBackend)
    events = [event("beep", "low", 0.6), event("noise_burst", "high", 1.2)]
    clips = backend.render(events, AudioSamplerSpec(steps=4, batch_size=2), [0, 1])
    assert clips.shape == (2, CLIP_SAMPLES) and np.isfinite(clips).all()
    assert all(np.abs(c[:int(e.duration * 16000)]).std() > 1e-3 for c, e in zip(clips, events))
    weights = sum(p.stat().st_size for p in EMBEDDED_TONES_TINY.rglob("*"))
    assert weights < 15e6  # fp16, a few MB
