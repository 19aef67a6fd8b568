"""Whether two image dataset folders hold the same samples: what the resume tests assert of a
stopped-then-resumed run against an uninterrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

FILE_COLUMNS = ("image", "semantic_mask", "instance_mask")


def assert_same_dataset(root: str | Path, other: str | Path,
                        ignore: Sequence[str] = ("seconds",)) -> pd.DataFrame:
    """The manifests are equal but for the ``ignore``d columns (timings, the model's path), and
    every sample's image and masks are equal byte for byte; returns ``root``'s manifest."""
    root, other = Path(root), Path(other)
    a = pd.read_parquet(root / "manifest.parquet").drop(columns=list(ignore))
    b = pd.read_parquet(other / "manifest.parquet").drop(columns=list(ignore))
    pd.testing.assert_frame_equal(a, b)
    for column in [c for c in FILE_COLUMNS if c in a]:
        for rel in a[column]:
            assert (root / rel).read_bytes() == (other / rel).read_bytes(), rel
    return a
