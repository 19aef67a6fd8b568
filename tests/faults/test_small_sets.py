"""A reference (or dataset) with too few samples for any figure is refused in one line that names
the set and the minimum (issue 14: a 1-image reference ended in "Array must not contain infs or
NaNs" after numpy warnings); two samples are enough to compute every figure without a warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from augment.testing.scenes import scenes_dataset
from evaluation.config import EvalSpec
from evaluation.evaluate import MIN_SET_SIZE, evaluate_dataset

SYNTHMILL = str(Path(sys.executable).parent / "synthmill")
METRICS = ["fid", "kid", "diversity"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return scenes_dataset(tmp_path_factory.mktemp("sets"), "scenes", 8, 4)


def _folder(scenes: Path, tmp_path: Path, n: int) -> Path:
    folder = tmp_path / f"ref{n}"
    folder.mkdir()
    for image in sorted((scenes / "images").glob("*.png"))[:n]:
        shutil.copy(image, folder)
    return folder


def test_a_one_image_reference_is_refused_naming_it_and_the_minimum(scenes, tmp_path):
    ref = _folder(scenes, tmp_path, 1)
    spec = EvalSpec(metrics=METRICS, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=rf"^reference {ref}: 1 readable sample\(s\); evaluation "
                                         rf"needs at least {MIN_SET_SIZE} in each set"):
        evaluate_dataset(scenes, spec, ref)
    done = subprocess.run([SYNTHMILL, "evaluate", str(scenes), "-r", str(ref), "--out", "report",
                           "--set", "metrics=[fid,kid]", "--set", f"cache_dir={tmp_path}/cache"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: reference {ref}: 1 readable sample(s); evaluation needs at least 2 in each set "
        "(figures are only worth reading from a few dozen up; FID is biased below 2048)"]
    assert not (tmp_path / "report").exists()


def test_a_one_image_dataset_is_refused_too(scenes, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted((scenes / "images").glob("*.png"))[0], one)
    with pytest.raises(ValueError, match=rf"^dataset {one}: 1 readable sample"):
        evaluate_dataset(one, EvalSpec(metrics=METRICS, cache_dir=str(tmp_path / "cache")), scenes)


def test_the_minimum_computes_every_figure_without_a_numpy_warning(scenes, tmp_path):
    ref = _folder(scenes, tmp_path, MIN_SET_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        spec = EvalSpec(metrics=METRICS, cache_dir=str(tmp_path / "c"), min_group_size=2)
        table = evaluate_dataset(scenes, spec, ref).figures
    overall = table[table["group"] == "all"].set_index("metric")
    for metric in ("fid", "kid", "vendi"):
        assert np.isfinite(overall.loc[metric, "value"]), overall.loc[metric]
