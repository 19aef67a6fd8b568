"""Evaluation cost: our full evaluation vs the direct library calls, and a second run on unchanged data.

Two folders of real shapes-world scenes (a "generated" set and a reference) are made once. Per repeat:

- ours, cold: ``evaluate_dataset`` with every default metric (FID, KID, IS, PRC, density/coverage,
  diversity, memorization, CLIP alignment, layout fidelity, per-class groups, bootstrap intervals)
  and an empty feature cache;
- baseline: what a user would write by hand for the same core figures: one
  ``torch_fidelity.calculate_metrics`` call (FID, KID, IS, PRC on the shapes-features extractor,
  both sets), one open_clip pass (image embeddings of the set + its captions, CLIPScore), and one
  checker pass over the set (layout fidelity);
- ours, warm: ``evaluate_dataset`` again on the unchanged set with the cache the cold run filled.

Rows: ``evaluation_full_vs_direct_calls`` (ratio = direct seconds / ours; the target is >= 1/1.2,
i.e. ours at most 1.2x the passes themselves) and ``evaluation_second_run_vs_first`` (cold / warm).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from augment.config import EvalSpec, ImageJob, ModelSpec, SamplerSpec, VerifySpec
from augment.generate import dataset_dir, generate_dataset
from benchmarks.common import interleaved, median, row, timed

NUM_IMAGES = 256


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
                       model=ModelSpec(backend="shapes-world"), sampler=SamplerSpec(batch_size=128),
                       verify=VerifySpec(enabled=False))
        generate_dataset(job, work)
        sets.append(dataset_dir(job, work))
    return sets[0], sets[1]


def direct_calls(gen: Path, ref: Path) -> dict:
    """The same core figures straight from torch-fidelity, open_clip and the checker."""
    import pandas as pd
    import torch_fidelity

    from augment.shapes.checker import load_checker, predict
    from evaluation.clip_alignment import clip_score
    from evaluation.clip_models import encode_images, encode_texts, load_clip
    from evaluation.extractors.shapes_features import EXTRACTOR_NAME, register

    register()
    out = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(ref), feature_extractor=EXTRACTOR_NAME,
        feature_layer_fid="features", feature_layer_kid="features", feature_layer_prc="features",
        feature_layer_isc="logits_unbiased", fid=True, kid=True, isc=True, prc=True,
        kid_subset_size=min(1000, NUM_IMAGES), batch_size=64, cuda=False, verbose=False,
        save_cpu_ram=True, cache=False)
    images = torch.stack([_Images(gen)[i] for i in range(NUM_IMAGES)])
    model, _, tokenizer = load_clip()
    captions = pd.read_parquet(gen / "manifest.parquet").sort_values("id")["caption"].tolist()
    out["clip_score"] = float(clip_score(encode_images(model, images),
                                         encode_texts(model, tokenizer, captions)).mean())
    semantic, _ = predict(load_checker(), images, batch_size=64)
    out["checker_pixels"] = int(semantic.numel())
    return out


def run(repeats: int = 5) -> tuple[list[dict], list[str]]:
    from evaluation.evaluate import evaluate_dataset

    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-eval-"))
    try:
        gen, ref = _make_sets(work)
        cache = work / "cache"

        def ours():
            shutil.rmtree(cache, ignore_errors=True)
            evaluate_dataset(gen, EvalSpec(cache_dir=str(cache)), ref)

        ours()  # warm-up: imports, model loads from disk into the page cache
        direct_calls(gen, ref)
        t_ours, t_direct = interleaved(ours, lambda: direct_calls(gen, ref), repeats)
        # the last ours() left a full cache: time re-runs on unchanged data against fresh cold runs
        t_warm = [timed(evaluate_dataset, gen, EvalSpec(cache_dir=str(cache)), ref)[0]
                  for _ in range(repeats)]
        rows = [row("evaluation_full_vs_direct_calls", 1 / median(t_ours), 1 / median(t_direct),
                    "evaluations/s", repeats),
                row("evaluation_second_run_vs_first", 1 / median(t_warm), 1 / median(t_ours),
                    "evaluations/s", repeats)]
        notes = [f"- evaluation: {NUM_IMAGES} vs {NUM_IMAGES} 64x64 images; ours (all default metrics, "
                 f"empty cache) median {median(t_ours):.1f} s; direct torch-fidelity (FID, KID, IS, "
                 f"PRC) + open_clip CLIPScore + checker pass {median(t_direct):.1f} s; ours again on "
                 f"unchanged data (feature cache) {median(t_warm):.1f} s"]
        return rows, notes
    finally:
        shutil.rmtree(work, ignore_errors=True)
