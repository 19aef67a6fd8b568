"""Evaluation cost: our full evaluation vs the direct library calls, and a second run on unchanged data.

Two folders of real shapes-world scenes (a "generated" set and a reference) are made once. Per repeat:

- ours, cold: ``evaluate_dataset`` with every default metric (FID, KID, IS, PRC, density/coverage,
  diversity, memorization, CLIP alignment, layout fidelity, per-class groups, bootstrap intervals)
  and an empty feature cache;
- baseline: what a user would write by hand for the same core figures: one
  ``torch_fidelity.calculate_metrics`` call (FID, KID, IS, PRC on the shapes-features extractor,
  both sets), open_clip on the set's images and captions (CLIPScore) and on its instance crops
  (boxes from the COCO file, ``roi_align`` to the model's input size, zero-shot accuracy), and one
  checker pass over the set (layout fidelity): every model pass our figures need, each once;
- ours, warm: ``evaluate_dataset`` again on the unchanged set with the cache the cold run filled.

Rows: ``evaluation_full_vs_direct_calls`` (ratio = direct seconds / ours; the target is >= 1/1.2,
i.e. ours at most 1.2x the passes themselves) and ``evaluation_second_run_vs_first`` (cold / warm).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch_fidelity
from PIL import Image
from torchvision.ops import roi_align

from augment.config import ImageJob, ImageSamplerSpec, VerifySpec
from augment.config.image import ShapesWorldSpec
from augment.core.shards import generate_dataset
from augment.image.checker import load_checker, predict
from augment.image.clip import TEMPLATE, crop_boxes, encode_images, encode_texts, load_clip
from benchmarks.common import interleaved, median, row, timed
from evaluation.config import EvalSpec
from evaluation.evaluate import evaluate_dataset
from evaluation.image.clip_alignment import clip_score
from evaluation.image.shapes_features import EXTRACTOR_NAME, register

NUM_IMAGES = 256
CROP_SECONDS: list[float] = []  # time of the direct crop pass, per call


class _Images(torch.utils.data.Dataset):
    """uint8 (3, H, W) tensors, torch-fidelity's input contract."""

    def __init__(self, folder: Path):
        self.files = sorted((folder / "images").glob("*.png"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(Image.open(self.files[i]).convert("RGB"))).permute(2, 0, 1)


def _make_sets(work: Path) -> tuple[Path, Path]:
    sets = []
    for name, seed in (("gen", 11), ("ref", 12)):
        job = ImageJob(name=name, num_samples=NUM_IMAGES, seed=seed, shard_size=NUM_IMAGES,
                       model=ShapesWorldSpec(backend="shapes-world"),
                       sampler=ImageSamplerSpec(batch_size=128), verify=VerifySpec(enabled=False))
        sets.append(generate_dataset(job, work)[0])
    return sets[0], sets[1]


def direct_calls(gen: Path, ref: Path) -> dict:
    """The same core figures straight from torch-fidelity, open_clip and the checker."""
    register()
    out = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(ref), feature_extractor=EXTRACTOR_NAME,
        feature_layer_fid="features", feature_layer_kid="features", feature_layer_prc="features",
        feature_layer_isc="logits_unbiased", fid=True, kid=True, isc=True, prc=True,
        kid_subset_size=min(1000, NUM_IMAGES), batch_size=64, cuda=False, verbose=False,
        save_cpu_ram=True, cache=False, rng_seed=EvalSpec().seed)  # IS splits shuffled alike
    files = _Images(gen)
    images = torch.stack([files[i] for i in range(len(files))])
    model, _, tokenizer = load_clip()
    captions = pd.read_parquet(gen / "manifest.parquet").sort_values("id")["caption"].tolist()
    out["clip_score"] = float(clip_score(encode_images(model, images),
                                         encode_texts(model, tokenizer, captions)).mean())
    crop_start = time.perf_counter()
    coco = json.loads((gen / "annotations" / "instances.json").read_text())
    position = {path: i for i, path in enumerate(files.files)}
    row_of = {im["id"]: position[gen / im["file_name"]] for im in coco["images"]}
    xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in coco["annotations"]]
    square = crop_boxes(boxes=np.asarray(xyxy), image_size=tuple(images.shape[-2:]))  # + margin
    boxes = torch.cat([torch.tensor([[row_of[a["image_id"]]] for a in coco["annotations"]],
                                    dtype=torch.float32), torch.from_numpy(square)], dim=1)
    crops = roi_align(images.float() / 255, boxes, output_size=model.visual.image_size,
                      sampling_ratio=-1, aligned=True)
    names = [c["name"] for c in coco["categories"]]
    text = encode_texts(model, tokenizer, [TEMPLATE.format(n) for n in names])
    pred = (encode_images(model, crops) @ text.T).argmax(1)
    truth = [names.index(n) for n in ({c["id"]: c["name"] for c in coco["categories"]}[a["category_id"]]
                                      for a in coco["annotations"])]
    out["crop_accuracy"] = float((pred == np.asarray(truth)).mean())
    CROP_SECONDS.append(time.perf_counter() - crop_start)
    semantic, _ = predict(load_checker(), images, batch_size=64)
    out["checker_pixels"] = int(semantic.numel())
    return out


def _agreement(table, direct: dict) -> str:
    """Largest relative difference between our figures and the direct calls' (they must agree)."""
    ours = table[table["group"] == "all"].set_index("metric")["value"]
    pairs = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
             "inception_score": "inception_score_mean", "precision": "precision",
             "recall": "recall", "clip_score": "clip_score", "clip_crop_accuracy": "crop_accuracy"}
    diffs = {m: abs(ours[m] - direct[k]) / max(abs(direct[k]), 1e-12) for m, k in pairs.items()}
    worst = max(diffs, key=diffs.get)
    return f"max relative difference {diffs[worst]:.1e} ({worst}) over {', '.join(pairs)}"


def run(repeats: int = 9) -> tuple[list[dict], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-eval-"))
    try:
        gen, ref = _make_sets(work)
        cache = work / "cache"

        def ours():
            shutil.rmtree(cache, ignore_errors=True)
            return evaluate_dataset(gen, EvalSpec(cache_dir=str(cache)), ref)

        same = _agreement(ours().figures, direct_calls(gen, ref))  # also the warm-up
        CROP_SECONDS.clear()
        t_ours, t_direct = interleaved(ours, lambda: direct_calls(gen, ref), repeats)
        no_crops = median([d - c for d, c in zip(t_direct, CROP_SECONDS)])
        # the last ours() left a full cache: time re-runs on unchanged data against fresh cold runs
        t_warm = [timed(evaluate_dataset, gen, EvalSpec(cache_dir=str(cache)), ref)[0]
                  for _ in range(repeats)]
        rows = [row("evaluation_full_vs_direct_calls", 1 / median(t_ours), 1 / median(t_direct),
                    "evaluations/s", repeats),
                row("evaluation_second_run_vs_first", 1 / median(t_warm), 1 / median(t_ours),
                    "evaluations/s", repeats)]
        paired = sorted(o / d for o, d in zip(t_ours, t_direct))
        notes = [f"- evaluation: {NUM_IMAGES} vs {NUM_IMAGES} 64x64 images; ours (all default metrics, "
                 f"empty cache) median {median(t_ours):.2f} s; direct torch-fidelity (FID, KID, IS, "
                 f"PRC) + open_clip CLIPScore and crop zero-shot + checker pass "
                 f"{median(t_direct):.2f} s: ours = {median(t_ours) / median(t_direct):.2f}x "
                 f"(per-repeat ratios {paired[0]:.2f}..{paired[-1]:.2f}, median "
                 f"{median(paired):.2f}); against the direct calls without the crop pass "
                 f"({no_crops:.2f} s) ours = {median(t_ours) / no_crops:.2f}x; ours again on "
                 f"unchanged data (feature cache) "
                 f"{median(t_warm):.2f} s. Same figures both ways: {same}"]
        return rows, notes
    finally:
        shutil.rmtree(work, ignore_errors=True)
