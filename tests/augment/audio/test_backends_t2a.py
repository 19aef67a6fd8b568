"""Text-to-audio backends (AudioLDM2, Stable Audio) end to end on tiny random-weight components saved
to a temp folder and loaded back through the loader a user calls: clip contract, determinism,
batch invariance, prompts, the NaN guard and fp32 retry, offline and unsafe-weight errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import augment.core.shards as shards
from augment.audio.backends import CLIP_SAMPLES
from augment.audio.backends.audioldm2 import AudioLDM2Backend
from augment.audio.backends.stable_audio import StableAudioBackend
from augment.audio.backends.text_to_audio import to_clips
from augment.audio.soundscape import Event, Soundscape
from augment.audio.world import SAMPLE_RATE
from augment.config.audio import AudioJob, AudioSamplerSpec
from augment.core.backends import load_backend, render_guarded
from augment.core.registry import BACKENDS
from augment.core.schedulers import SCHEDULER_CLASSES
from augment.testing.tiny_audio import (save_audioldm2_folder, save_stable_audio_folder,
                                        save_tiny_clap)

NAMES = ("audioldm2", "stable-audio")
CLASSES = {"audioldm2": AudioLDM2Backend, "stable-audio": StableAudioBackend}
SAMPLERS = {
    "audioldm2": AudioSamplerSpec(scheduler="ddim", steps=2, guidance=3.0, eta=0.5,
                                  negative_prompt="speech, music"),
    "stable-audio": AudioSamplerSpec(scheduler="dpmsolver++", steps=2, guidance=3.0,
                                     negative_prompt="speech, music"),
}
EVENTS = [Event("beep", "high", 2000.0, 0.0, 0.5, 10.0, 1),
          Event("chirp_up", None, None, 0.25, 1.25, 12.0, 2),
          Event("am_tone", "low", 300.0, 1.0, 2.0, 8.0, 3)]
SEEDS = [11, 12, 13]
LAST_MODULE = {"audioldm2": "vocoder", "stable-audio": "vae.decoder"}
"""The module whose output is the audio, where a test plants a NaN."""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_t2a(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-t2a")
    return {"audioldm2": save_audioldm2_folder(root), "stable-audio": save_stable_audio_folder(root),
            "clap": save_tiny_clap(root / "clap")}


def spec_of(tiny_t2a, name: str, **kw):
    return BACKENDS.get(name).spec_model()(path=str(tiny_t2a[name]), **kw)


@pytest.fixture(scope="module")
def rendered(tiny_t2a):
    """Each backend's clips of EVENTS with SEEDS."""
    return {name: load_backend(spec_of(tiny_t2a, name)).render(EVENTS, SAMPLERS[name], SEEDS)
            for name in NAMES}


def submodule(pipe, dotted: str) -> torch.nn.Module:
    for part in dotted.split("."):
        pipe = getattr(pipe, part)
    return pipe


@pytest.mark.parametrize("name", NAMES)
def test_clips_are_16khz_float32_finite_and_silent_after_each_event(rendered, name):
    clips = rendered[name]
    assert clips.shape == (3, CLIP_SAMPLES) and clips.dtype == np.float32
    assert np.isfinite(clips).all() and np.abs(clips).max() <= 1.0
    for clip, event in zip(clips, EVENTS):
        end = int(round(event.duration * SAMPLE_RATE))
        assert not clip[end:].any()
        assert clip[:end].std() > 0 and clip[end - 400:end].any()


@pytest.mark.parametrize("name", NAMES)
def test_no_events_no_clips(tiny_t2a, name):
    clips = load_backend(spec_of(tiny_t2a, name)).render([], SAMPLERS[name], [])
    assert clips.shape == (0, CLIP_SAMPLES) and clips.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_clip_and_another_seed_differs(tiny_t2a, rendered, name):
    backend = load_backend(spec_of(tiny_t2a, name))
    again = backend.render(EVENTS, SAMPLERS[name], [11, 12, 99])
    assert np.array_equal(again[:2], rendered[name][:2])
    assert np.abs(again[2] - rendered[name][2]).max() > 1e-3 * np.abs(again[2]).max()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("negative_prompt", ["speech, music", ""])
def test_a_clip_in_a_batch_equals_it_rendered_alone(tiny_t2a, name, negative_prompt):
    backend = load_backend(spec_of(tiny_t2a, name))
    sampler = SAMPLERS[name].model_copy(update={"negative_prompt": negative_prompt})
    batch = backend.render(EVENTS, sampler, SEEDS)
    for k in (1, 2):  # prompts of different lengths: padding must not leak into a clip
        alone = backend.render([EVENTS[k]], sampler, [SEEDS[k]])[0]
        np.testing.assert_allclose(alone, batch[k], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_prompts_name_the_class_and_pitch_and_reach_the_model(tiny_t2a, name, monkeypatch):
    backend = load_backend(spec_of(tiny_t2a, name))
    sampler = SAMPLERS[name].model_copy(update={"prompt_template": "the sound of {caption}"})
    assert [backend.prompt(e, sampler) for e in EVENTS] == [
        "the sound of a high beep", "the sound of a rising chirp",
        "the sound of a low warbling tone"]
    seen = []
    real = backend.generate

    def spy(pipe, prompts, sampler, seeds):
        seen.append((prompts, seeds))
        return real(pipe, prompts, sampler, seeds)

    monkeypatch.setattr(backend, "generate", spy)
    backend.render(EVENTS[:2], sampler, [5, 6])
    assert seen == [(["the sound of a high beep", "the sound of a rising chirp"], [5, 6])]


def test_audioldm2_encodes_each_text_alone_with_the_negative_prompt(tiny_t2a, rendered):
    backend = load_backend(spec_of(tiny_t2a, "audioldm2"))
    texts = {text for pipe_id, text in backend._encoded if pipe_id == id(backend.pipe)}
    assert {"a high beep", "a rising chirp", "a low warbling tone", "speech, music"} <= texts


@pytest.mark.parametrize("scheduler", ["ddpm", "dpmsolver++", "unipc", "euler"])
def test_audioldm2_runs_every_scheduler_by_name(tiny_t2a, scheduler):
    backend = load_backend(spec_of(tiny_t2a, "audioldm2"))
    sampler = SAMPLERS["audioldm2"].model_copy(update={"scheduler": scheduler})
    clips = backend.render(EVENTS[:1], sampler, [1])
    assert np.isfinite(clips).all()
    assert type(backend.pipe.scheduler).__name__ == SCHEDULER_CLASSES[scheduler][0]


def test_stable_audio_refuses_a_scheduler_that_is_not_its_own(tiny_t2a):
    backend = load_backend(spec_of(tiny_t2a, "stable-audio"))
    sampler = SAMPLERS["stable-audio"].model_copy(update={"scheduler": "ddim"})
    with pytest.raises(ValueError, match="sampler.scheduler: stable-audio .*'dpmsolver\\+\\+'"):
        backend.render(EVENTS[:1], sampler, [1])


def test_audioldm2_uses_sdpa_attention_and_a_generating_language_model(tiny_t2a):
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import GPT2LMHeadModel

    pipe = load_backend(spec_of(tiny_t2a, "audioldm2")).pipe
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    index = json.loads((tiny_t2a["audioldm2"] / "model_index.json").read_text())
    assert index["language_model"] == ["transformers", "GPT2Model"]  # as released checkpoints
    assert isinstance(pipe.language_model, GPT2LMHeadModel)


@pytest.mark.parametrize("name", NAMES)
def test_a_non_finite_clip_is_a_nan_row(tiny_t2a, name):
    backend = load_backend(spec_of(tiny_t2a, name))

    def overflow(module, inputs, output):
        output[1] = float("inf")  # what an fp16 overflow leaves
        return output

    hook = submodule(backend.pipe, LAST_MODULE[name]).register_forward_hook(overflow)
    try:
        clips = backend.render(EVENTS, SAMPLERS[name], SEEDS)
    finally:
        hook.remove()
    assert np.isnan(clips[1]).all() and np.isfinite(clips[[0, 2]]).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_nan_clip_is_retried_in_fp32_by_the_guard(tiny_t2a, rendered, name, monkeypatch):
    backend = load_backend(spec_of(tiny_t2a, name))
    real, calls = backend.render, []

    def overflow_once(events, sampler, seeds, force_fp32=False):
        calls.append((len(events), force_fp32))
        clips = real(events, sampler, seeds, force_fp32)
        if len(calls) == 1:
            clips[1] = np.nan
        return clips

    monkeypatch.setattr(backend, "render", overflow_once)
    clips, status = render_guarded(backend, EVENTS, SAMPLERS[name], SEEDS)
    assert calls == [(3, False), (1, True)]
    assert status == ["ok", "retried_fp32", "ok"]
    np.testing.assert_allclose(clips, rendered[name], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_the_fp32_retry_loads_a_float32_copy_of_a_half_precision_backend(tiny_t2a, rendered, name):
    cls, spec = CLASSES[name], spec_of(tiny_t2a, name)
    loaded = load_backend(spec)
    half = cls.build_pipeline(spec, loaded.folder, torch.bfloat16, torch.device("cpu"))
    backend = cls(spec=spec, pipe=half, folder=loaded.folder, model_id=loaded.model_id,
                  weights=loaded.weights, device=torch.device("cpu"), dtype=torch.bfloat16)
    clips = backend.render(EVENTS, SAMPLERS[name], SEEDS, force_fp32=True)
    assert backend._fp32.text_encoder.dtype == torch.float32
    assert backend.pipe.text_encoder.dtype == torch.bfloat16
    np.testing.assert_allclose(clips, rendered[name], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_the_weights_hash_follows_the_loaded_weights(tiny_t2a, tmp_path, name):
    first = load_backend(spec_of(tiny_t2a, name)).weights
    builder = {"audioldm2": save_audioldm2_folder, "stable-audio": save_stable_audio_folder}[name]
    other = CLASSES[name].load(spec_of({name: builder(tmp_path, seed=1)}, name)).weights
    copy = shutil.copytree(tiny_t2a[name], tmp_path / "copy")
    assert len(first) == 16 and other != first
    assert CLASSES[name].load(spec_of({name: copy}, name)).weights == first


@pytest.mark.parametrize("name, hub_id", [("audioldm2", "cvssp/audioldm2"),
                                          ("stable-audio", "stabilityai/stable-audio-open-1.0")])
def test_an_offline_hub_id_is_one_line_naming_the_model_and_the_field(name, hub_id):
    with pytest.raises(FileNotFoundError) as error:
        load_backend(BACKENDS.get(name).spec_model()(path=hub_id))
    message = str(error.value)
    assert "\n" not in message and hub_id in message and "set model.path" in message


@pytest.mark.parametrize("name, weights", [
    ("audioldm2", "language_model/model.safetensors"),
    ("stable-audio", "transformer/diffusion_pytorch_model.safetensors")])
def test_pickled_weights_are_refused(tiny_t2a, tmp_path, name, weights):
    folder = shutil.copytree(tiny_t2a[name], tmp_path / name)
    (folder / weights).rename((folder / weights).with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match=f"cannot load {name} weights .*{folder}") as error:
        CLASSES[name].load(spec_of({name: folder}, name))
    assert "\n" not in str(error.value)


def test_to_clips_mixes_down_resamples_and_marks_non_finite_rows():
    t = torch.arange(44_100 * 3) / 44_100
    tone = torch.sin(2 * torch.pi * 440 * t)
    stereo = torch.stack([torch.stack([tone, tone]), torch.stack([2 * tone, 0 * tone]),
                          torch.stack([tone, tone])])  # (3, 2, N) at 44.1 kHz
    stereo[2, 0, 5] = float("nan")
    clips = to_clips(stereo, 44_100, [1.0, 2.0, 1.0])
    assert clips.shape == (3, CLIP_SAMPLES)
    expected = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    np.testing.assert_allclose(clips[0, 100:SAMPLE_RATE - 100], expected[100:-100], atol=2e-3)
    np.testing.assert_allclose(clips[1, :SAMPLE_RATE], clips[0, :SAMPLE_RATE], atol=1e-4)
    assert not clips[0, SAMPLE_RATE:].any() and np.isnan(clips[2]).all()
    louder = to_clips(3 * stereo[:1], 44_100, [1.0])
    assert np.abs(louder).max() == pytest.approx(1.0)


def test_an_audioldm2_dataset_with_clap_verification(tiny_t2a, tmp_path):
    job = AudioJob.model_validate({
        "name": "ldm2", "num_samples": 2, "shard_size": 2, "seed": 3,
        "model": {"backend": "audioldm2", "path": str(tiny_t2a["audioldm2"])},
        "sampler": SAMPLERS["audioldm2"].model_dump(),
        "soundscape": {"duration": 2.0, "events_per_scape": (1, 2), "event_duration": (0.3, 1.0)},
        "verify": {"clap_model": str(tiny_t2a["clap"]), "min_score": 0.0}})
    root, _ = shards.generate_dataset(job, tmp_path)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert list(manifest["status"]) == ["ok", "ok"] and manifest["kept"].all()
    for row in manifest.itertuples():
        scape = Soundscape.from_json(row.layout)
        assert row.prompt == " | ".join(e.phrase for e in scape.events)
    events = [e for row in manifest["instances"] for e in json.loads(row)]
    assert events and all(0.0 < e["verify_clap"] <= 1.0 and e["clap_pred"] for e in events)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cuda_renders_finite_clips(tiny_t2a, name, dtype):
    loaded = load_backend(spec_of(tiny_t2a, name, device="cuda", dtype=dtype))
    assert loaded.pipe.text_encoder.dtype == getattr(torch, dtype)
    assert loaded.pipe._execution_device.type == "cuda"
    clips, status = render_guarded(loaded, EVENTS, SAMPLERS[name], SEEDS)
    assert clips.shape == (3, CLIP_SAMPLES) and np.isfinite(clips).all()
    assert set(status) <= {"ok", "retried_fp32"}


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cpu_offload_on_cuda_matches_the_placed_pipeline(tiny_t2a, name):
    placed = load_backend(spec_of(tiny_t2a, name, device="cuda"))
    offloaded = load_backend(spec_of(tiny_t2a, name, device="cuda", cpu_offload=True))
    assert offloaded.pipe._execution_device.type == "cuda"
    np.testing.assert_allclose(offloaded.render(EVENTS, SAMPLERS[name], SEEDS),
                               placed.render(EVENTS, SAMPLERS[name], SEEDS), atol=1e-4)
