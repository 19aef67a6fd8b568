"""The audio names of the fidelity figures, computed by the one implementation in
``evaluation.fidelity`` (the functions only see feature arrays; only the figure's name differs).

- ``fad``: Frechet Audio Distance (Kilgour et al. 2019, "Frechet Audio Distance: A Metric for
  Evaluating Music Enhancement Algorithms"): the Frechet distance of Gaussians fitted to clip
  embeddings of the set and of the reference, with the FID's delete-d jackknife interval and
  per-group rows.
- ``fad_infinity``: FAD extrapolated to infinite N by a linear fit over 1/N (Gui et al. 2024,
  "Adapting Frechet Audio Distance for Generative Music Evaluation", as fadtk reports it; the same
  fit as FID-infinity, Chong & Forsyth 2020).
- ``audio_kid``: KID (Binkowski et al. 2018; polynomial-kernel unbiased MMD^2) on clip embeddings.
- ``audio_is``: the Inception Score formula (Salimans et al. 2016) on the embedded tones
  classifier's class probabilities instead of Inception's.

The embeddings are the audio fidelity extractor's (``EvalSpec.audio_extractor``: the embedded
tones classifier's penultimate features, or CLAP audio embeddings); the ``extractor`` column of
metrics.csv names it.
"""

from __future__ import annotations

from evaluation.figures import Figure
from evaluation.fidelity import score_fid, score_fid_infinity, score_is, score_kid
from evaluation.inputs import MetricInputs


def score_fad(inputs: MetricInputs) -> list[Figure]:
    """FAD of the set and of each group against the reference (``evaluation.fidelity.score_fid``)."""
    return score_fid(inputs, figure="fad")


def score_fad_infinity(inputs: MetricInputs) -> list[Figure]:
    """FAD-infinity of the whole set (``evaluation.fidelity.score_fid_infinity``)."""
    return score_fid_infinity(inputs, figure="fad_infinity")


def score_audio_kid(inputs: MetricInputs) -> list[Figure]:
    """KID of clip embeddings, the set and each group (``evaluation.fidelity.score_kid``)."""
    return score_kid(inputs, figure="audio_kid")


def score_audio_is(inputs: MetricInputs) -> list[Figure]:
    """Audio IS from the embedded tones classifier's clip logits (``evaluation.fidelity.score_is``)."""
    return score_is(inputs, figure="audio_is", need="classifier")
