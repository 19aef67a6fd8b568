"""Domain feature extractors for FID/KID/IS/precision-recall, registered with torch-fidelity."""

from evaluation.extractors.shapes_features import (CLASS_NAMES, EXTRACTOR_NAME, ShapesFeatureExtractor,
                                                   ShapesFeatureNet, extract, load_shapes_features,
                                                   register, weights_sha256)

__all__ = ["CLASS_NAMES", "EXTRACTOR_NAME", "ShapesFeatureExtractor", "ShapesFeatureNet", "extract",
           "load_shapes_features", "register", "weights_sha256"]
