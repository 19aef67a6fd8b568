"""The CLAP path (``augment.audio.clap``) on a tiny random ``ClapModel`` saved to a temp folder and
loaded back: zero-shot scores against the model's own forward pass, embeddings, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torchaudio

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.clap import TEMPLATE, clap_scores, embed_audio, embed_text, load_clap
from augment.audio.soundscape import Event
from augment.audio.world import CLASSES, SAMPLE_RATE, render_event
from augment.testing.tiny_audio import save_tiny_clap

EVENTS = [Event("beep", "high", 2500.0, 0.0, 0.5, 10.0, 1),
          Event("noise_burst", None, None, 0.0, 1.2, 10.0, 2),
          Event("chirp_down", "low", 300.0, 0.0, 2.0, 10.0, 3)]


@pytest.fixture(scope="module")
def clap_folder(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest.fixture(scope="module")
def clips():
    """Real tones-world clips of EVENTS, noise after each event's end (which must be ignored)."""
    out = np.random.default_rng(0).uniform(-0.5, 0.5, (len(EVENTS), CLIP_SAMPLES))
    for row, event in enumerate(EVENTS):
        frequency = event.frequency or 1000.0
        clip = render_event(event.label, frequency, event.duration, event.seed, SAMPLE_RATE)
        out[row, :len(clip)] = clip
    return out.astype(np.float32)


@torch.no_grad()
def direct_probabilities(folder, wave: np.ndarray, texts: list[str]) -> np.ndarray:
    """P(text | audio) from the stock model and processor: ``logits_per_audio`` softmax."""
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(folder).eval()
    processor = ClapProcessor.from_pretrained(folder)
    rate = processor.feature_extractor.sampling_rate
    audio = torchaudio.functional.resample(torch.from_numpy(wave), SAMPLE_RATE, rate).numpy()
    inputs = processor(text=texts, audio=[audio], sampling_rate=rate, return_tensors="pt",
                       padding=True)
    return model(**inputs).logits_per_audio.softmax(dim=-1)[0].numpy()


def test_scores_equal_a_direct_computation_with_the_model(clap_folder, clips):
    scores = clap_scores(load_clap(clap_folder), clips, EVENTS, list(CLASSES))
    for event, clip, score in zip(EVENTS, clips, scores):
        texts = [TEMPLATE.format(phrase=Event(c, event.pitch, None, 0, 1, 0, 0).phrase)
                 for c in CLASSES]
        probs = direct_probabilities(clap_folder, clip[:int(event.duration * SAMPLE_RATE)], texts)
        assert score["verify_clap"] == pytest.approx(probs[CLASSES.index(event.label)], abs=1e-5)
        assert score["clap_pred"] == CLASSES[int(probs.argmax())]


def test_candidates_keep_the_pitch_and_change_only_the_class(clap_folder, clips, monkeypatch):
    import augment.audio.clap as clap_module

    seen = []
    real = clap_module.embed_text
    monkeypatch.setattr(clap_module, "embed_text",
                        lambda clap, texts: seen.extend(texts) or real(clap, texts))
    clap_scores(load_clap(clap_folder), clips[:1], EVENTS[:1], ["beep", "chirp_up"])
    assert seen == ["the sound of a high beep", "the sound of a high rising chirp"]


def test_only_each_events_own_samples_are_scored(clap_folder, clips):
    clap = load_clap(clap_folder)
    silent_tail = clips.copy()
    for row, event in enumerate(EVENTS):
        silent_tail[row, int(event.duration * SAMPLE_RATE):] = 0.0
    assert clap_scores(clap, silent_tail, EVENTS, list(CLASSES)) == clap_scores(
        clap, clips, EVENTS, list(CLASSES))


def test_a_non_finite_clip_scores_zero_and_leaves_the_others_alone(clap_folder, clips):
    clap = load_clap(clap_folder)
    broken = clips.copy()
    broken[1, 10] = np.nan
    scores = clap_scores(clap, broken, EVENTS, list(CLASSES))
    assert scores[1] == {"verify_clap": 0.0, "clap_pred": None}
    good = clap_scores(clap, clips, EVENTS, list(CLASSES))
    for k in (0, 2):
        assert scores[k]["verify_clap"] == pytest.approx(good[k]["verify_clap"], abs=1e-6)
        assert scores[k]["clap_pred"] == good[k]["clap_pred"]


def test_embeddings_are_unit_norm_and_do_not_depend_on_the_batch(clap_folder, clips):
    clap = load_clap(clap_folder)
    batch = embed_audio(clap, clips, batch_size=2)
    assert batch.shape == (3, clap.model.config.projection_dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for row in range(3):
        np.testing.assert_allclose(embed_audio(clap, clips[row:row + 1])[0], batch[row], atol=1e-5)
    mixed = embed_audio(clap, [clips[0][:8000], clips[1]])
    np.testing.assert_allclose(mixed[1], batch[1], atol=1e-5)
    text = embed_text(clap, ["a beep", "the sound of a low falling chirp"])
    assert text.shape == (2, clap.model.config.projection_dim)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert embed_audio(clap, np.zeros((0, 100))).shape == (0, clap.model.config.projection_dim)


def test_audio_longer_than_the_window_is_cut_to_its_first_window(clap_folder, clips):
    clap = load_clap(clap_folder)
    window = int(clap.processor.feature_extractor.nb_max_samples) * SAMPLE_RATE // clap.sample_rate
    long = np.tile(clips[2], 3)[:window + 5000]
    np.testing.assert_allclose(embed_audio(clap, [long]), embed_audio(clap, [long[:window]]),
                               atol=1e-5)
    np.testing.assert_array_equal(embed_audio(clap, [long]), embed_audio(clap, [long]))


def test_loaded_once_per_process_with_a_weights_hash(clap_folder):
    clap = load_clap(clap_folder)
    assert load_clap(str(clap_folder)) is clap and len(clap.weights) == 16
    assert clap.sample_rate == 48_000 and not clap.model.training


def test_unknown_classes_are_named(clap_folder, clips):
    with pytest.raises(ValueError, match=r"\['noise_burst'\]"):
        clap_scores(load_clap(clap_folder), clips, EVENTS, ["beep", "chirp_down"])


def test_a_missing_folder_is_named_with_the_field_to_set(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"verify.clap_model: .*{tmp_path / 'nope'}"):
        load_clap(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="eval.clap: "):
        load_clap(tmp_path / "nope", field="eval.clap")


def test_pickled_weights_are_refused(clap_folder, tmp_path):
    folder = shutil.copytree(clap_folder, tmp_path / "clap")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=f"cannot load a CLAP model .*{folder}") as error:
        load_clap(folder)
    assert "\n" not in str(error.value)


@pytest.mark.gpu
def test_scores_on_cuda_match_the_cpu(clap_folder, clips):
    on_gpu = clap_scores(load_clap(clap_folder, "cuda"), clips, EVENTS, list(CLASSES))
    on_cpu = clap_scores(load_clap(clap_folder), clips, EVENTS, list(CLASSES))
    assert [s["verify_clap"] for s in on_gpu] == pytest.approx(
        [s["verify_clap"] for s in on_cpu], abs=1e-4)
