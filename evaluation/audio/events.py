"""Event-level checks of soundscapes: do the events a dataset's labels promise sound where and as
what they say?

- **Label consistency**: each labelled event is cut out of its soundscape (onset to offset, as
  shipped: over its background) and classified by the embedded tones classifier, trained on real
  tones-world clips only; the figure is the share classified as their label, overall and per class.
- **Event F1**: a detector, the same classifier sliding over the soundscape in short windows
  (``sliding_windows``), turns class probabilities into events (``detect_events``); they are scored
  against the dataset's events with sed_eval's ``EventBasedMetrics`` (Mesaros et al. 2016, the
  DCASE peer library): onsets within a 200 ms collar, offsets within max(200 ms, half the event's
  length), micro-averaged F1 over files. The detector is plain, so its F1 on *real* tones-world
  soundscapes is the ceiling a generated set can reach (measured on 24 real soundscapes of 4 s
  with 1-3 events: 0.89 [0.75, 0.97] one event at a time, 0.72 [0.60, 0.85] with up to two
  overlapping; ``tests/evaluation/audio/test_events.py``); compare a generated set's figure with
  that of a real set made with the same soundscape settings.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from augment.audio.classifier import LABELS
from augment.audio.world import SAMPLE_RATE
from evaluation.audio.sets import Events
from evaluation.figures import Figure
from evaluation.stats import bootstrap_ci, proportion_figure


MEDIAN_CELLS = 3
"""Width (in hops) of the median filter that removes one-hop blips and gaps from activity."""


def sliding_windows(wave: np.ndarray, window: float, hop: float,
                    sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window`` seconds every ``hop`` seconds over a waveform (N,): (starts (F,)
    seconds, frames float32 (F, window samples)); the last window is zero-padded, as the
    classifier is trained on windows cut at a soundscape's end."""
    size, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    starts = np.arange(0, max(len(wave) - size, 0) + 1, step)
    if starts[-1] + size < len(wave):  # a last, partial window reaches the end
        starts = np.append(starts, starts[-1] + step)
    frames = np.zeros((len(starts), size), dtype=np.float32)
    for i, start in enumerate(starts):
        piece = wave[start:start + size]
        frames[i, :len(piece)] = piece
    return starts / sample_rate, frames


def detect_events(probs: np.ndarray, starts: np.ndarray, seconds: float, window: float, hop: float,
                  threshold: float, classes: list[str] | tuple[str, ...],
                  min_duration: float = 0.2) -> Events:
    """Events from the class probabilities of sliding windows.

    ``probs``: (F, len(LABELS)) over ``augment.audio.classifier.LABELS`` (background first) of
    windows starting at ``starts`` (F,) seconds, each ``window`` s long, every ``hop`` s. A hop-long
    cell's activity of a class is the mean probability of the windows covering it; cells above
    ``threshold`` are active, smoothed by a median filter of ``MEDIAN_CELLS`` cells; each run of
    active cells of at least ``min_duration`` seconds is an event (onset and offset on cell edges,
    clipped to ``seconds``).
    """
    cells = max(1, int(np.ceil(seconds / hop - 1e-9)))
    activity = np.zeros((cells, len(LABELS) - 1))
    covered = np.zeros(cells)
    for p, start in zip(probs, starts):
        a = int(round(start / hop))
        b = min(cells, a + max(1, int(round(window / hop))))
        activity[a:b] += p[1:]
        covered[a:b] += 1
    activity /= np.maximum(covered, 1)[:, None]
    active = ndimage.median_filter((activity > threshold).astype(np.int8), size=(MEDIAN_CELLS, 1),
                                   mode="constant")
    events = []
    for k, label in enumerate(LABELS[1:]):
        if label not in classes:
            continue
        edges = np.diff(np.concatenate([[0], active[:, k], [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if (b - a) * hop >= min_duration - 1e-9:
                events.append({"label": label, "onset": a * hop, "offset": min(b * hop, seconds)})
    return sorted(events, key=lambda e: (e["onset"], e["label"]))


def event_counts(reference: list[Events], estimated: list[Events], classes: list[str],
                 collar: float = 0.2) -> np.ndarray:
    """Per file (Ntp, Nref, Nsys) int (N, 3) of sed_eval's event-based matching, with onset collar
    ``collar`` s and offset collar max(``collar``, 50% of the event's length)."""
    # dcase_util imports pkg_resources, deprecated; imported only when event F1 is computed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import dcase_util
        import sed_eval

    def container(name: str, events: Events):
        return dcase_util.containers.MetaDataContainer(
            [{"filename": name, "onset": e["onset"], "offset": e["offset"],
              "event_label": e["label"]} for e in events])

    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=list(classes), t_collar=collar)
    counts, before = np.zeros((len(reference), 3), dtype=np.int64), np.zeros(3)
    for i, (ref, est) in enumerate(zip(reference, estimated)):
        metric.evaluate(container(f"{i}.wav", ref), container(f"{i}.wav", est))
        now = np.asarray([metric.overall[k] for k in ("Ntp", "Nref", "Nsys")])
        counts[i], before = now - before, now
    return counts


def f1_of_counts(counts: np.ndarray) -> float:
    """Micro-averaged F1 = 2 Ntp / (Nref + Nsys) of summed (Ntp, Nref, Nsys) rows (sed_eval's
    overall F1); NaN when there are no events on either side."""
    tp, ref, sys = np.asarray(counts).sum(0)
    return float(2 * tp / (ref + sys)) if ref + sys else float("nan")


def event_f1_figure(counts: np.ndarray, group: str = "all", rounds: int = 200,
                    confidence: float = 0.95, seed: int = 0, details: str = "") -> Figure:
    """Event F1 of files' (Ntp, Nref, Nsys) counts; interval: bootstrap over files."""
    lo, hi = bootstrap_ci(lambda idx: f1_of_counts(counts[idx]), len(counts), rounds, confidence,
                          seed)
    tp, ref, sys = counts.sum(0)
    return Figure("event_f1", f1_of_counts(counts), lo, hi, len(counts), group,
                  f"{tp} of {ref} labelled events detected, {sys} detections; bootstrap over "
                  f"files; {details}".rstrip("; "))


def label_consistency_figures(probs: np.ndarray, labels: list[str], confidence: float = 0.95,
                              min_group_size: int = 2) -> list[Figure]:
    """Share of event clips the classifier names as their label: overall and per class of at least
    ``min_group_size`` events, Wilson intervals. ``probs``: (E, len(LABELS)); ``labels``: (E,)."""
    predicted = np.asarray(LABELS)[np.asarray(probs).argmax(1)]
    truth = np.asarray(labels)
    correct = predicted == truth
    note = "embedded tones classifier on each event cut out of its soundscape"
    out = [proportion_figure("label_consistency", correct, "all", confidence, note)]
    for label in sorted(set(labels)):
        mask = truth == label
        if mask.sum() >= min_group_size:
            wrong = predicted[mask & ~correct]
            common = (f"; most common other: {max(set(wrong), key=list(wrong).count)}"
                      if len(wrong) else "")
            out.append(proportion_figure("label_consistency", correct[mask], f"class={label}",
                                         confidence, note + common))
    return out


# The ``label_consistency`` and ``event_f1`` metrics (``evaluation.registry``) ----------------------

def score_label_consistency(inputs) -> list[Figure]:
    """Label consistency of the set's labelled events (``inputs``: ``evaluation.inputs.MetricInputs``
    with the ``events`` extractor's arrays), overall and per class of ``min_group_size`` events."""
    arrays, events = inputs.arrays("events"), inputs.sample_set.events
    labels = [events[r][i]["label"] for r, i in zip(arrays["event_row"], arrays["event_index"])]
    if not labels:
        return []
    return label_consistency_figures(arrays["event_probs"], labels, inputs.spec.confidence,
                                     inputs.spec.min_group_size)


def detections(arrays: dict[str, np.ndarray], rows: np.ndarray, spec,
               classes: list[str]) -> list[Events]:
    """The detector's events of each of ``rows`` (set rows) from the ``events`` extractor's arrays;
    ``spec``: the ``EvalSpec`` (event_window, event_hop, event_threshold)."""
    out = []
    for position, row in enumerate(rows):
        mine = arrays["window_row"] == row
        out.append(detect_events(arrays["window_probs"][mine], arrays["window_start"][mine],
                                 float(arrays["seconds"][position]), spec.event_window,
                                 spec.event_hop, spec.event_threshold, classes))
    return out


def score_event_f1(inputs) -> list[Figure]:
    """Event F1 of the detector's events against the set's labels: the whole set and each group of
    ``min_group_size`` files (bootstrap over files)."""
    spec, audio_set = inputs.spec, inputs.sample_set
    rows = inputs.features.rows
    arrays = inputs.arrays("events")
    classes = audio_set.classes or sorted({e["label"] for scape in audio_set.events for e in scape})
    counts = event_counts([audio_set.events[r] for r in rows],
                          detections(arrays, rows, spec, classes), classes, spec.event_collar)
    details = (f"sliding tones classifier ({spec.event_window} s windows every {spec.event_hop} s, "
               f"threshold {spec.event_threshold}) vs the labels, sed_eval event-based, "
               f"{spec.event_collar} s collar; ceiling: the same figure on real tones-world "
               "soundscapes of the same settings")
    return [event_f1_figure(counts[members], group, spec.bootstrap_rounds, spec.confidence,
                            spec.seed, details)
            for group, members in inputs.targets(spec.min_group_size)]
