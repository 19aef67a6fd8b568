"""The audio extractors an evaluation runs, built from ``EvalSpec``, as cacheable ``Extractor``s.

Each takes the set reader's waveforms (float32 (N,) at 16 kHz, lengths may differ; ``prepare``
passes the list through) and meets one need (``evaluation.registry``):

- ``fidelity``: the clip embedding FAD, KID, precision/recall, diversity and memorization use:
  ``tones-classifier`` (default) or ``clap`` (``EvalSpec.audio_extractor``);
- ``classifier``: the embedded tones classifier per file (``features`` and ``logits``; audio IS);
- ``events``: the classifier over the set's labelled events and sliding over each file (label
  consistency, the event detector; ``evaluation.audio.events``);
- ``clap`` / ``clap_events``: CLAP embeddings of files and of labelled events (CLAPScore, zero-shot
  class accuracy; ``evaluation.audio.clap_alignment``), when ``EvalSpec.clap_model`` is given.

Files longer than the classifier's window (2.048 s, e.g. soundscapes): the classifier sees windows
of that length every half window, the last one ending at the file's end, and a file's features are
the mean of its windows' features, its class probabilities the mean of theirs (``logits`` = their
log). A whole-window mean keeps every part of a soundscape in its embedding, which is what FAD
compares; shorter files are one window, zero-padded at the end, exactly as the classifier was
trained and as ``augment.audio.classifier.classify`` fits them.

Cache keys: an extractor's name plus its ``weights`` (a hash of the weights file or folder) key the
feature cache beside the files' contents. Extractors that cut events out of the files read the
set's labels, which the contents do not cover, so their ``weights`` also hash the events (and the
detector's window and hop): a relabelled set is a cache miss.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from augment.audio.classifier import EMBEDDED_CLASSIFIER, TonesClassifier, classify, load_classifier
from augment.audio.world import SAMPLE_RATE
from augment.core.io import sha256_file
from augment.core.modelio import WEIGHTS_NAME
from evaluation.audio.events import sliding_windows
from evaluation.audio.sets import AudioSet
from evaluation.config import EvalSpec
from evaluation.features import Extractor, ExtractorPlan, FunctionExtractor

CLASSIFIER_NAME = "tones-classifier"


def waves_as_list(samples: list[torch.Tensor]) -> list[np.ndarray]:
    """``Extractor.prepare`` of audio: the decoded waveforms as float32 numpy arrays, unchanged."""
    return [np.asarray(s, dtype=np.float32) for s in samples]


def clip_windows(wave: np.ndarray, window: int) -> np.ndarray:
    """float32 (K, window): one zero-padded window for a file of at most ``window`` samples, else
    windows every ``window // 2`` samples, the last one ending at the file's end."""
    if len(wave) <= window:
        out = np.zeros((1, window), dtype=np.float32)
        out[0, :len(wave)] = wave
        return out
    starts = list(range(0, len(wave) - window, window // 2)) + [len(wave) - window]
    return np.stack([wave[s:s + window] for s in starts]).astype(np.float32)


def embed_files(model: TonesClassifier, waves: list[np.ndarray],
                batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per file: ``features`` (B, D) float32, the mean penultimate features of its windows
    (``clip_windows``), and ``logits`` (B, len(LABELS)) float32, the log of its windows' mean class
    probabilities."""
    windows = [clip_windows(w, model.window) for w in waves]
    owner = np.repeat(np.arange(len(waves)), [len(w) for w in windows])
    out = classify(model, np.concatenate(windows), batch_size)
    counts = np.bincount(owner, minlength=len(waves))[:, None]

    def mean(x):
        sums = np.zeros((len(waves), x.shape[1]), dtype=np.float64)
        np.add.at(sums, owner, x)
        return sums / counts

    probs = mean(out["class_probs"])
    return {"features": mean(out["features"]).astype(np.float32),
            "logits": np.log(np.clip(probs, 1e-12, None)).astype(np.float32)}


def classifier_weights() -> str:
    """Hash (16 hex digits) of the embedded tones classifier's weights."""
    return sha256_file(EMBEDDED_CLASSIFIER / WEIGHTS_NAME)[:16]


def classifier_extractor(spec: EvalSpec) -> FunctionExtractor:
    """The embedded tones classifier per file: ``features`` (B, 128), ``logits`` (B, 8)."""
    model = load_classifier(None, spec.device)
    return FunctionExtractor(CLASSIFIER_NAME, classifier_weights(), waves_as_list,
                             lambda waves, rows: embed_files(model, waves, spec.batch_size),
                             spec.batch_size)


def event_clips(wave: np.ndarray, events: list[dict], window: int) -> np.ndarray:
    """float32 (E, window): each event's samples cut out of its file (onset to offset, over
    whatever else sounds then), zero-padded or cut to ``window``."""
    out = np.zeros((len(events), window), dtype=np.float32)
    for i, event in enumerate(events):
        piece = wave[int(round(event["onset"] * SAMPLE_RATE)):
                     int(round(event["offset"] * SAMPLE_RATE))][:window]
        out[i, :len(piece)] = piece
    return out


def _keyed(*parts) -> str:
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def events_extractor(spec: EvalSpec, audio_set: AudioSet) -> FunctionExtractor:
    """The tones classifier over the set's labelled events and sliding over each file.

    Outputs: ``event_probs`` (E, len(LABELS)) of each event clip (``event_clips``),
    ``event_row`` / ``event_index`` (E,) its set row and index in the row's events; ``window_probs``
    (F, len(LABELS)) of detector windows (``EvalSpec.event_window`` s every ``event_hop`` s),
    ``window_row`` (F,), ``window_start`` (F,) seconds; ``seconds`` (B,) each file's duration.
    """
    model = load_classifier(None, spec.device)
    window, hop = spec.event_window, spec.event_hop

    def fn(waves, rows):
        clips, clip_row, clip_index, probs, frame_row, frame_start = [], [], [], [], [], []
        for wave, row in zip(waves, rows):
            events = audio_set.events[row]
            clips.append(event_clips(wave, events, model.window))
            clip_row += [row] * len(events)
            clip_index += list(range(len(events)))
            starts, frames = sliding_windows(wave, window, hop)
            # one file's windows at a time: a batch of all of them is hundreds of MB of padding
            probs.append(classify(model, frames, spec.batch_size)["class_probs"])
            frame_row += [row] * len(starts)
            frame_start.append(starts)
        return {"event_probs": classify(model, np.concatenate(clips), spec.batch_size)["class_probs"],
                "event_row": np.asarray(clip_row, np.int64),
                "event_index": np.asarray(clip_index, np.int64),
                "window_probs": np.concatenate(probs),
                "window_row": np.asarray(frame_row, np.int64),
                "window_start": np.concatenate(frame_start),
                "seconds": np.asarray([len(w) / SAMPLE_RATE for w in waves])}

    return FunctionExtractor("tones-events", _keyed(classifier_weights(), audio_set.events_key(),
                                                    window, hop),
                             waves_as_list, fn, spec.batch_size)


def _clap(spec: EvalSpec):
    # transformers' CLAP is imported only when an evaluation uses CLAP
    from augment.audio.clap import load_clap

    return load_clap(spec.clap_model, spec.device, field="evaluate.clap_model")


def clap_name(spec: EvalSpec) -> str:
    return f"clap-{Path(spec.clap_model).name}"


def clap_extractor(spec: EvalSpec) -> FunctionExtractor:
    """Unit-norm CLAP audio embeddings of each file, ``features`` (B, D) (a file longer than the
    model's window, 10 s for LAION-CLAP, is embedded from its first window:
    ``augment.audio.clap.embed_audio``)."""
    from augment.audio.clap import embed_audio

    clap = _clap(spec)
    return FunctionExtractor(clap_name(spec), clap.weights, waves_as_list,
                             lambda waves, rows: {"features": embed_audio(clap, waves,
                                                                          batch_size=spec.batch_size)},
                             spec.batch_size)


def clap_events_extractor(spec: EvalSpec, audio_set: AudioSet) -> FunctionExtractor:
    """Unit-norm CLAP embeddings of each labelled event's samples: ``event_audio`` (E, D),
    ``event_row`` / ``event_index`` (E,)."""
    from augment.audio.clap import embed_audio

    clap = _clap(spec)
    dim = clap.model.config.projection_dim

    def fn(waves, rows):
        pieces, event_row, event_index = [], [], []
        for wave, row in zip(waves, rows):
            for i, event in enumerate(audio_set.events[row]):
                piece = wave[int(round(event["onset"] * SAMPLE_RATE)):
                             int(round(event["offset"] * SAMPLE_RATE))]
                if len(piece):
                    pieces.append(piece)
                    event_row.append(row)
                    event_index.append(i)
        audio = (embed_audio(clap, pieces, batch_size=spec.batch_size) if pieces
                 else np.zeros((0, dim), np.float32))
        return {"event_audio": audio, "event_row": np.asarray(event_row, np.int64),
                "event_index": np.asarray(event_index, np.int64)}

    return FunctionExtractor(f"{clap_name(spec)}-events", _keyed(clap.weights,
                                                                 audio_set.events_key()),
                             waves_as_list, fn, spec.batch_size)


def plan_extractors(spec: EvalSpec, audio_set: AudioSet, needs: set[str]) -> ExtractorPlan:
    """The fidelity extractor and those the ``needs`` ask for and the set allows (event ones only
    for sets with events; CLAP ones only with ``EvalSpec.clap_model``). One extractor may meet
    several needs (e.g. the tones classifier: ``fidelity`` and ``classifier``); it runs once."""
    use_clap = spec.clap_model is not None and "clap" in needs
    classifier = (classifier_extractor(spec) if spec.audio_extractor == CLASSIFIER_NAME
                  or "classifier" in needs else None)
    clap = clap_extractor(spec) if spec.audio_extractor == "clap" or use_clap else None
    by_need: dict[str, Extractor] = {
        "fidelity": classifier if spec.audio_extractor == CLASSIFIER_NAME else clap}
    if "classifier" in needs:
        by_need["classifier"] = classifier
    if "events" in needs and audio_set.events is not None:
        by_need["events"] = events_extractor(spec, audio_set)
    if use_clap:
        by_need["clap"] = clap
        if audio_set.events is not None:
            by_need["clap_events"] = clap_events_extractor(spec, audio_set)
    return ExtractorPlan(by_need)
