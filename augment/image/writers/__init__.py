"""Export a dataset folder's labels to training formats: COCO (``coco.py``), YOLO (``yolo.py``)."""

from augment.image.writers.coco import write_coco
from augment.image.writers.yolo import write_yolo

__all__ = ["write_coco", "write_yolo"]
