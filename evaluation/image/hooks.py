"""The image modality's part of evaluation (``evaluation.modality.ModalityHooks``)."""

from __future__ import annotations

from evaluation.image.audit import run_audit
from evaluation.image.extractors import plan_extractors
from evaluation.image.pictures import dataset_pictures, image_png
from evaluation.image.sets import open_dataset, open_path
from evaluation.modality import ModalityHooks


class ImageHooks(ModalityHooks):
    """Images: PIL-decoded sets (synthmill datasets, image folders, COCO files), the image
    extractors, the colour audit, sample grids and class balance."""

    open_dataset = staticmethod(open_dataset)
    open_path = staticmethod(open_path)
    extractors = staticmethod(plan_extractors)
    audit = staticmethod(run_audit)
    pictures = staticmethod(dataset_pictures)
    preview = staticmethod(image_png)


IMAGE = ImageHooks()
