"""Text-audio alignment with CLAP, the audio twin of ``evaluation.image.clip_alignment``:

- **CLAPScore**: the cosine similarity of each clip's CLAP audio embedding with its caption's text
  embedding (as Make-An-Audio and AudioLDM evaluations report it; the audio counterpart of
  CLIPScore, Hessel et al. 2021, without its rescaling), mean over the set with a bootstrap
  interval;
- **zero-shot class accuracy**: each labelled event's samples against "the sound of a <class>"
  for every class of the set (``augment.audio.clap.TEMPLATE``), the share named right.

Embeddings come from the cached ``clap`` / ``clap_events`` extractors
(``evaluation.audio.extractors``); model, resampling and template are ``augment.audio.clap``'s, the
same as generation-time verification uses.
"""

from __future__ import annotations

import numpy as np

from augment.audio.clap import TEMPLATE, embed_text, load_clap, zero_shot
from augment.audio.world import CLASS_PHRASES
from evaluation.figures import Figure
from evaluation.inputs import MetricInputs
from evaluation.stats import mean_ci, proportion_figure


def clap_score(audio: np.ndarray, text: np.ndarray) -> np.ndarray:
    """CLAPScore per pair, (N,) float64: cos(audio_i, text_i) of (N, D) embeddings of matching rows."""
    a, b = np.asarray(audio, np.float64), np.asarray(text, np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"embeddings must be two (N, D) arrays of one shape, got {a.shape} and "
                         f"{b.shape}")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def class_prompt(label: str) -> str:
    """"the sound of a beep": the zero-shot prompt of a class (its tones-world phrase if it has
    one, else its name with spaces)."""
    phrase = CLASS_PHRASES.get(label, label.replace("_", " "))
    return TEMPLATE.format(phrase=("an " if phrase[0] in "aeiou" else "a ") + phrase)


def score_clap(inputs: MetricInputs) -> list[Figure]:
    """CLAPScore of each file against its caption, and zero-shot class accuracy of its labelled
    events (overall and per class of ``min_group_size`` events) when the set has events."""
    spec, audio_set = inputs.spec, inputs.sample_set
    clap = load_clap(spec.clap_model, spec.device, field="evaluate.clap_model")
    out = []
    if audio_set.captions:
        captions = [audio_set.captions[r] for r in inputs.features.rows]
        scores = clap_score(inputs.arrays("clap")["features"], embed_text(clap, captions))
        mean, lo, hi = mean_ci(scores, seed=spec.seed, confidence=spec.confidence)
        out.append(Figure("clap_score", mean, lo, hi, len(scores), "all",
                          f"cosine of CLAP audio and caption embeddings; model {clap.folder.name}"))
    if "clap_events" in inputs.extractors:
        out += _zero_shot_accuracy(inputs, clap)
    return out


def _zero_shot_accuracy(inputs: MetricInputs, clap) -> list[Figure]:
    arrays, audio_set, spec = inputs.arrays("clap_events"), inputs.sample_set, inputs.spec
    if not len(arrays["event_row"]):
        return []
    truth = np.asarray([audio_set.events[r][i]["label"]
                        for r, i in zip(arrays["event_row"], arrays["event_index"])])
    names = sorted(set(audio_set.classes or []) | set(truth.tolist()))
    probs = zero_shot(clap, arrays["event_audio"], embed_text(clap, [class_prompt(n) for n in names]))
    correct = np.asarray(names)[probs.argmax(1)] == truth
    note = f"zero-shot '{TEMPLATE}' over {len(names)} classes, each labelled event's samples"
    out = [proportion_figure("clap_zero_shot_accuracy", correct, "all", spec.confidence, note)]
    for name in names:
        mask = truth == name
        if mask.sum() >= spec.min_group_size:
            out.append(proportion_figure("clap_zero_shot_accuracy", correct[mask],
                                         f"class={name}", spec.confidence, note))
    return out
