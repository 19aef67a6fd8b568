"""Reading a dataset's manifest back: which samples a reader or an exporter takes."""

from __future__ import annotations

import pandas as pd

SPLITS = ("train", "val")


def exported_rows(manifest: pd.DataFrame, columns: tuple[str, ...], split: str | None = None,
                  kept_only: bool = True) -> list[dict]:
    """Manifest rows to read or export, sorted by id, as plain dicts of ``columns``.

    Failed samples (``status == "failed"``: non-finite output even in fp32) have no output and are
    never returned (``retried_fp32`` samples are fine);
    ``kept_only`` also drops samples the verification step rejected.
    """
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}; expected {list(columns)}")
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    keep = manifest["status"] != "failed"
    if kept_only:
        keep &= manifest["kept"].astype(bool)
    if split is not None:
        keep &= manifest["split"] == split
    unknown = manifest.loc[keep & ~manifest["split"].isin(SPLITS), "id"]
    if len(unknown):
        raise ValueError(f"samples {unknown.tolist()[:5]} have a split other than {SPLITS}")
    rows = manifest.loc[keep, list(columns)].sort_values("id")
    return rows.to_dict("records")
