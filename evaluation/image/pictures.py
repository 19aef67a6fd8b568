"""Pictures of image datasets for the report: sample grids per class, single images (memorization
pairs), and the class balance of a dataset's instances."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib import patheffects
from matplotlib.patches import Rectangle
from PIL import Image

from augment.image.dataset import (SampleReadError, exported_rows, mask_xyxy, read_image,
                                   read_label_map, visible_instances)
from evaluation.plots import (Picture, class_balance, class_rows_figure, figure_png,
                             rows_per_class)

_HIGHLIGHT = "#ffd400"  # the row's class; over a black stroke, so it reads on any colour
_STROKE = [patheffects.withStroke(linewidth=2.2, foreground="black")]


def grid_samples(dataset_dir: str | Path, per_class: int = 4,
                 classes: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """The kept manifest rows ``sample_grid`` shows: per class, the first ``per_class`` samples
    (by id) holding an instance of it. ``classes`` defaults to the dataset's categories."""
    root = Path(dataset_dir)
    categories = json.loads((root / "dataset.json").read_text())["categories"]
    return rows_per_class(exported_rows(pd.read_parquet(root / "manifest.parquet")), classes,
                          per_class, categories, root)


def _draw_sample(ax, root: Path, row: dict, highlight: str, outlines: bool) -> None:
    """Image with instance outlines and boxes; the highlighted class in bold, others thin."""
    image = read_image(root, row)  # (H, W, 3) uint8
    instance_map = read_label_map(root, row, "instance_mask", image.shape[:2])
    instances = json.loads(row["instances"])
    ax.imshow(image, interpolation="nearest")
    for k in visible_instances(instance_map, len(instances), row["id"]):
        mask = instance_map == k + 1  # (H, W) bool
        mine = instances[k]["category"] == highlight
        colour, width = (_HIGHLIGHT, 1.0) if mine else ("white", 0.6)
        effects = _STROKE if mine else []
        if outlines:
            cs = ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)
            cs.set(path_effects=effects)
        if mine:
            x0, y0, x1, y1 = mask_xyxy(mask)
            # pixel k covers [k - 0.5, k + 0.5] in imshow coordinates
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=colour, linewidth=width, path_effects=effects))


def sample_grid(dataset_dir: str | Path, per_class: int = 4,
                classes: Sequence[str] | None = None) -> bytes:
    """PNG of kept samples, one row per class (``grid_samples``), the class name as row label.

    Instances of the row's class are outlined (from ``masks/instance``) and boxed in yellow; other
    instances get a thin white outline. Datasets labelled with boxes only get boxes. A sample whose
    files cannot be read shows as an "unreadable" cell, so the grid still matches its caption list.
    """
    root = Path(dataset_dir)
    outlines = json.loads((root / "dataset.json").read_text()).get("labels", "masks") == "masks"
    fig = class_rows_figure(grid_samples(root, per_class, classes), per_class,
                            lambda ax, row, name: _draw_sample(ax, root, row, name, outlines),
                            (SampleReadError, ValueError))
    return figure_png(fig)


def image_png(path: str | Path, size: int = 128) -> bytes:
    """Any image file as PNG bytes, its longer side scaled to ``size`` (nearest-neighbour when
    enlarging, so small samples stay sharp): for report sections such as memorization pairs."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = size / max(im.size)
        resample = Image.NEAREST if scale > 1 else Image.LANCZOS
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       resample)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def dataset_pictures(root: Path, per_class: int) -> tuple[list[Picture], pd.DataFrame | None]:
    """The report's pictures of a synthmill image dataset: a grid of ``per_class`` kept samples per
    class (none when 0) and the class balance; and the id, split, caption and prompt of the samples
    the grid shows."""
    info = json.loads((root / "dataset.json").read_text())
    manifest = pd.read_parquet(root / "manifest.parquet")
    pictures, shown = [], None
    if per_class > 0:
        pictures.append(Picture(sample_grid(root, per_class),
                                "kept samples per class; the row's class outlined and boxed in "
                                "yellow, other instances outlined in white"))
        rows = {r["id"]: r for picked in grid_samples(root, per_class).values() for r in picked}
        cols = [c for c in ("id", "split", "caption", "prompt") if c in manifest.columns]
        shown = pd.DataFrame([rows[i] for i in sorted(rows)], columns=cols)
    kept, dropped = _class_counts(manifest)
    pictures.append(Picture(class_balance(kept, _requested(info), dropped),
                            "share of instances per class in kept samples vs the requested "
                            "frequencies; instances in dropped samples"))
    return pictures, shown


def _class_counts(manifest: pd.DataFrame) -> tuple[Counter, Counter]:
    """Instances per class in kept samples, and in samples verification dropped."""
    kept, dropped = Counter(), Counter()
    generated = manifest[manifest["status"] != "failed"]
    for is_kept, text in zip(generated["kept"], generated["instances"]):
        (kept if is_kept else dropped).update(i["category"] for i in json.loads(text))
    return kept, dropped


def _requested(info: dict) -> dict[str, float]:
    """Target class frequencies of the run; none for borrowed COCO layouts (no target)."""
    layout = info.get("config", {}).get("layout", {})
    if layout.get("coco_file"):
        return {}
    return layout.get("class_frequencies") or {c: 1.0 for c in info["categories"]}
