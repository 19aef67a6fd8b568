"""Sample sets: the modality supplies the reader, so the feature pass works on any kind of file;
generic evaluation modules import no image code."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from evaluation.features import FunctionExtractor, compute_features
from evaluation.sets import DecodeError, SampleSet, dataset_modality, open_set

EVALUATION = Path(__file__).resolve().parents[2] / "evaluation"


def decode_floats(data: bytes) -> torch.Tensor:
    """A toy modality's reader: float32 samples, 8 per file."""
    if len(data) != 32:
        raise DecodeError(f"{len(data)} bytes, expected 32")
    return torch.from_numpy(np.frombuffer(data, np.float32).copy())


@dataclass
class FloatSet(SampleSet):
    modality: ClassVar[str] = "floats"


def test_features_of_a_set_of_another_modality_use_its_reader(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.f32")
        files[-1].write_bytes(rng.normal(size=8).astype(np.float32).tobytes())
    files[2].write_bytes(b"short")
    sample_set = FloatSet("floats", tmp_path, files, "folder", decode_floats)
    extractor = FunctionExtractor("mean", "w0", torch.stack,
                                  lambda batch, rows: {"features": batch.mean(1, keepdim=True).numpy()})
    feats = compute_features(sample_set, [extractor], tmp_path / "cache", chunk_size=2,
                             progress=False)
    assert feats.rows.tolist() == [0, 1, 3, 4]
    assert feats.unreadable == [(str(files[2]), "cannot decode: 5 bytes, expected 32")]
    expected = [np.frombuffer(files[i].read_bytes(), np.float32).mean() for i in (0, 1, 3, 4)]
    np.testing.assert_allclose(feats.arrays["mean"]["features"][:, 0], expected, rtol=1e-6)


def test_open_set_names_what_it_cannot_open(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no sample files"):
        open_set(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_set(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a synthmill dataset folder"):
        open_set(tmp_path / "notes.txt")
    assert dataset_modality(tmp_path) == "image"  # datasets from before dataset.json named it


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_generic_evaluation_modules_import_no_image_code():
    """evaluation/*.py works on feature arrays whatever the modality; presets.py is data that
    names the shapes world's classes and colours."""
    image = ("evaluation.image", "augment.image", "PIL", "open_clip", "torchvision")
    found = {p.name: sorted(m for m in _imports(p) if m.startswith(image))
             for p in EVALUATION.glob("*.py") if p.name != "presets.py"}
    assert {name: mods for name, mods in found.items() if mods} == {}
