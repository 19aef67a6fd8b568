"""The image modality's part of dataset generation (``augment.core.shards.ModalityHooks``): the
condition of a sample is its layout; a sample is stored as an RGB PNG plus its semantic and
instance masks; verification scores each instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from augment.config.image import ImageJob, ImageSamplerSpec
from augment.core.backends import render_guarded
from augment.core.io import atomic_save_png, atomic_write_bytes, png_bytes
from augment.image.layout_types import Layout
from augment.image.layouts import layout_categories, sample_layout
from augment.image.verify import instance_records, is_kept, load_verifier


class ImageHooks:
    """Hooks of image jobs (``ImageJob``)."""

    roles = ("image", "semantic_mask", "instance_mask")
    sampler_model = ImageSamplerSpec

    def condition(self, job: ImageJob, index: int) -> Layout:
        return sample_layout(job.layout, job.seed, index)

    def condition_from_json(self, text: str) -> Layout:
        return Layout.from_json(text)

    def verifier(self, job: ImageJob):
        return load_verifier(job)

    def produce(self, job, backend, verifier, layouts: list[Layout], seeds: list[int]):
        """Images rendered with the NaN guard, as uint8 (B, H, W, 3), and their verification."""
        outputs, status = render_guarded(backend, layouts, job.sampler, seeds)
        images = np.clip(np.rint(outputs * 255), 0, 255).astype(np.uint8)
        return images, status, verifier(images, layouts) if verifier else [None] * len(layouts)

    def encode(self, image: np.ndarray, layout: Layout) -> tuple[bytes, str]:
        return png_bytes(image), ".png"

    def write_files(self, job: ImageJob, root: Path, stem: str, layout: Layout,
                    image: np.ndarray) -> dict[str, str]:
        paths = {"image": f"images/{stem}.png", "semantic_mask": f"masks/semantic/{stem}.png",
                 "instance_mask": f"masks/instance/{stem}.png"}
        atomic_write_bytes(root / paths["image"], self.encode(image, layout)[0])
        atomic_save_png(root / paths["semantic_mask"], layout.semantic_map)
        atomic_save_png(root / paths["instance_mask"], layout.instance_map)
        return paths

    def instances(self, job: ImageJob, layout: Layout,
                  scores: list[dict] | None) -> tuple[list[dict], dict[str, float | None]]:
        instances = instance_records(layout, scores)
        ious = [i["verify_iou"] for i in instances if i["verify_iou"] is not None]
        clip = [i["verify_clip"] for i in instances if i.get("verify_clip") is not None]
        return instances, {"iou": min(ious) if ious else None, "clip": min(clip) if clip else None}

    def is_kept(self, job: ImageJob, status: str, instances: list[dict]) -> bool:
        return is_kept(job, status, instances)

    def categories(self, job: ImageJob) -> list[str]:
        return layout_categories(job.layout)


IMAGE = ImageHooks()
