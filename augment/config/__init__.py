"""Generation settings as pydantic models, split by what they configure: ``base`` (what every job
and backend shares, loading and errors), ``image`` (image jobs and their backends), ``training``
(the embedded models' recipes). Evaluation settings live in ``evaluation.config``, the run as a
whole (jobs, runner) in ``flows.config``.
"""

from augment.config.base import (BackendSpec, ConfigError, JobBase, SamplerSpec, Strict,
                                 format_validation_error, load_config, read_yaml, validate)
from augment.config.image import (CocoLayoutSpec, ImageJob, ImageSamplerSpec, LayoutSpec,
                                  ShapesLayoutSpec, VerifySpec)
from augment.config.training import (TrainCheckerSpec, TrainClipSpec, TrainShapesFeaturesSpec,
                                     TrainShapesSpec)

__all__ = ["BackendSpec", "CocoLayoutSpec", "ConfigError", "ImageJob", "ImageSamplerSpec",
           "JobBase", "LayoutSpec", "SamplerSpec", "ShapesLayoutSpec", "Strict",
           "TrainCheckerSpec", "TrainClipSpec", "TrainShapesFeaturesSpec", "TrainShapesSpec",
           "VerifySpec", "format_validation_error", "load_config", "read_yaml",
           "validate"]
