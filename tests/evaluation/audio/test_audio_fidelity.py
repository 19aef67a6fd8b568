"""FAD, audio KID and audio IS against known answers and independent computations: FAD of a set
against itself ~ 0; FAD grows as white noise is added at falling SNR; our FAD equals a direct
numpy/scipy Frechet distance on the same embeddings; `synthmill reference` on a folder of WAVs
gives the same figures; a second evaluation of unchanged files is served from the cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from scipy import linalg
from typer.testing import CliRunner

from augment.audio.world import CLASSES, SAMPLE_RATE, render_event
from evaluation.evaluate import evaluate_dataset
from evaluation.fidelity import kid
from evaluation.reference import reference_from_set
from flows.cli import app


def value(table, metric, group="all"):
    row = table[(table.metric == metric) & (table.group == group)]
    assert len(row) == 1, (metric, group, table.metric.unique())
    return float(row.value.iloc[0])


def frechet_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to (N, D) embeddings, straight from its definition."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(sa @ sb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * root))


def test_fad_of_a_set_against_itself_is_zero_and_names_the_audio_figures(tones_scapes, audio_spec):
    table = evaluate_dataset(tones_scapes, audio_spec(), reference=tones_scapes).figures
    assert value(table, "fad") == pytest.approx(0, abs=1e-3)
    assert value(table, "audio_kid") < 0.01
    assert value(table, "precision") == value(table, "recall") == 1.0
    assert not {"fid", "kid", "inception_score", "clip_score", "unreadable_images"} & set(table.metric)
    assert set(table.extractor) == {"tones-classifier"}


def test_our_fad_and_kid_equal_direct_computations_on_the_same_embeddings(tones_scapes,
                                                                        tones_reference,
                                                                        audio_spec):
    spec = audio_spec(metrics=["fad", "audio_kid"], per_group=False)
    result = evaluate_dataset(tones_scapes, spec, reference=tones_reference)
    gen = result.features.arrays["tones-classifier"]["features"].astype(np.float64)
    ref, _ = reference_from_set(tones_reference, spec)
    direct = frechet_scipy(gen, ref.features.astype(np.float64))
    assert value(result.figures, "fad") == pytest.approx(direct, rel=1e-6)
    same_kid = kid(gen, ref.features, spec.kid_subset_size, spec.kid_subsets, spec.seed)
    assert value(result.figures, "audio_kid") == pytest.approx(same_kid.value, rel=1e-9)


def test_fad_grows_as_white_noise_is_added_at_falling_snr(tones_scapes, tmp_path, audio_spec):
    rng = np.random.default_rng(0)
    fads = []
    for snr in (40, 20, 10, 0):
        folder = tmp_path / f"snr{snr}"
        folder.mkdir()
        for path in sorted((tones_scapes / "audio").glob("*.wav")):
            wave, rate = sf.read(path, dtype="float32")
            noise = rng.standard_normal(len(wave)).astype(np.float32)
            noise *= np.sqrt(np.mean(wave ** 2) / 10 ** (snr / 10)) / noise.std()
            sf.write(folder / path.name, np.clip(wave + noise, -1, 1), rate, subtype="FLOAT")
        table = evaluate_dataset(folder, audio_spec(metrics=["fad"]), reference=tones_scapes).figures
        fads.append(value(table, "fad"))
    assert all(a < b for a, b in zip(fads, fads[1:])), fads


def test_audio_is_is_lower_for_one_class_than_for_all(tmp_path, audio_spec):
    for name, labels in (("one", ["beep"] * 28), ("all", list(CLASSES) * 4)):
        (tmp_path / name).mkdir()
        for i, label in enumerate(labels):
            sf.write(tmp_path / name / f"{i:03d}.wav",
                     render_event(label, 300.0 + 40 * i, 0.8, seed=i), SAMPLE_RATE)
    spec = audio_spec(metrics=["audio_is"], is_splits=1)
    one, many = (value(evaluate_dataset(tmp_path / n, spec).figures, "audio_is")
                 for n in ("one", "all"))
    assert one < 1.5 and many > 5.0  # exp(H(y)) of 1 class vs 7 classes, confidently named


def test_reference_stats_of_a_wav_folder_and_the_cache(tones_scapes, tones_reference, tmp_path,
                                                       audio_spec):
    spec = audio_spec(metrics=["fad"], per_group=False)
    wavs = tmp_path / "reference-wavs"
    shutil.copytree(tones_reference / "audio", wavs)
    stats = tmp_path / "ref.npz"
    out = CliRunner().invoke(app, ["reference", str(wavs), "--out", str(stats),
                                   "--set", f"cache_dir={spec.cache_dir}"])
    assert out.exit_code == 0, out.output
    assert "tones-classifier" in out.output
    by_folder = evaluate_dataset(tones_scapes, spec, reference=wavs)
    by_stats = evaluate_dataset(tones_scapes, spec.model_copy(update={"seed": 1}), reference=stats)
    assert value(by_stats.figures, "fad") == pytest.approx(value(by_folder.figures, "fad"), rel=1e-9)
    assert by_stats.features.computed == []  # features of unchanged files come from the cache
    image_spec = spec.model_copy(update={"metrics": ["fad", "fid"]})
    with pytest.raises(ValueError, match="holds image samples; audio datasets need a reference of audio"):
        evaluate_dataset(tones_scapes, image_spec, reference=_image_folder(tmp_path))


def _image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    return folder
