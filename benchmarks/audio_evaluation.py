"""Audio evaluation cost: our full evaluation vs the direct calls it needs, and a second run on
unchanged data.

Two datasets of real tones-world soundscapes (a "generated" set and a reference) are made once.
Per repeat:

- ours, cold: ``evaluate_dataset`` with every default metric (FAD, audio KID, audio IS,
  precision/recall, density/coverage, diversity, memorization, label consistency, event F1,
  per-class groups, intervals) and an empty feature cache;
- baseline: the model passes and metric functions those figures need, called by hand: each WAV read
  with soundfile, the embedded tones classifier once over each set's clip windows (FAD, KID, PRC,
  IS), once over the set's event clips and sliding detector windows (label consistency, event F1),
  then torch-fidelity's Frechet / KID / IS / PRC functions and sed_eval's event-based F1;
- ours, warm: ``evaluate_dataset`` again on the unchanged set with the cache the cold run filled.

Rows: ``audio_evaluation_full_vs_direct_calls`` (ratio = direct seconds / ours; target >= 1/1.2)
and ``audio_evaluation_second_run_vs_first`` (cold / warm; target >= 10).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, prc_features_to_metric

from augment.audio.classifier import classify, load_classifier
from augment.audio.dataset import audio_rows, events_of
from augment.audio.world import CLASSES
from augment.config.audio import AudioJob
from augment.core.shards import generate_dataset
from benchmarks.common import interleaved, median, row, timed
from evaluation.audio.events import detect_events, event_counts, f1_of_counts, sliding_windows
from evaluation.audio.extractors import clip_windows, event_clips
from evaluation.config import EvalSpec
from evaluation.evaluate import evaluate_dataset

NUM_SCAPES = 64


def _make_sets(work: Path) -> tuple[Path, Path]:
    sets = []
    for name, seed in (("gen", 21), ("ref", 22)):
        job = AudioJob.model_validate(dict(
            name=name, num_samples=NUM_SCAPES, shard_size=NUM_SCAPES, seed=seed,
            model={"backend": "tones-world"}, verify={"enabled": False},
            soundscape={"duration": 4.0, "max_polyphony": 1}))
        sets.append(generate_dataset(job, work)[0])
    return sets[0], sets[1]


def _waves(root: Path) -> tuple[list[np.ndarray], list[list[dict]]]:
    rows = sorted(audio_rows(pd.read_parquet(root / "manifest.parquet")), key=lambda r: r["id"])
    waves = [sf.read(root / r["audio"], dtype="float32")[0] for r in rows]
    events = [[{"label": e["category"], "onset": e["onset"], "offset": e["offset"]}
               for e in events_of(r)] for r in rows]
    return waves, events


def _embed(model, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    windows = [clip_windows(w, model.window) for w in waves]
    out = classify(model, np.concatenate(windows))
    cuts = np.cumsum([len(w) for w in windows])[:-1]
    features = np.stack([f.mean(0) for f in np.split(out["features"], cuts)])
    probs = np.stack([p.mean(0) for p in np.split(out["class_probs"], cuts)])
    return features.astype(np.float64), np.log(np.clip(probs, 1e-12, None))


def direct_calls(gen: Path, ref: Path, spec: EvalSpec) -> dict:
    """The same core figures from hand-written classifier passes and the metric libraries."""
    model = load_classifier()
    (gen_waves, gen_events), (ref_waves, _) = _waves(gen), _waves(ref)
    gen_feats, gen_logits = _embed(model, gen_waves)
    ref_feats, _ = _embed(model, ref_waves)
    clips = np.concatenate([event_clips(w, e, model.window) for w, e in zip(gen_waves, gen_events)])
    consistency = classify(model, clips)["class_probs"].argmax(1)
    detected = []
    for wave in gen_waves:
        starts, frames = sliding_windows(wave, spec.event_window, spec.event_hop)
        detected.append(detect_events(classify(model, frames)["class_probs"], starts,
                                      len(wave) / 16000, spec.event_window, spec.event_hop,
                                      spec.event_threshold, CLASSES))
    g, r = torch.from_numpy(gen_feats), torch.from_numpy(ref_feats)
    return {
        "fad": float(fid_statistics_to_metric(fid_features_to_statistics(g),
                                              fid_features_to_statistics(r), False)[KEY_METRIC_FID]),
        "audio_kid": kid_features_to_metric(g, r, kid_subsets=spec.kid_subsets,
                                            kid_subset_size=min(spec.kid_subset_size, len(g)),
                                            verbose=False)[KEY_METRIC_KID_MEAN],
        "audio_is": isc_features_to_metric(torch.from_numpy(gen_logits).float(),
                                           splits=spec.is_splits)[KEY_METRIC_ISC_MEAN],
        "precision": float(prc_features_to_metric(g.float(), r.float(),
                                                  verbose=False)[KEY_METRIC_PRECISION]),
        "label_consistency_events": int(len(consistency)),
        "event_f1": f1_of_counts(event_counts(gen_events, detected, list(CLASSES),
                                              spec.event_collar)),
    }


def _agreement(table: pd.DataFrame, direct: dict) -> str:
    ours = table[table["group"] == "all"].set_index("metric")["value"]
    pairs = ("fad", "precision", "event_f1")
    diffs = {m: abs(ours[m] - direct[m]) / max(abs(direct[m]), 1e-12) for m in pairs}
    worst = max(diffs, key=diffs.get)
    return f"max relative difference {diffs[worst]:.1e} ({worst}) over {', '.join(pairs)}"


def run(repeats: int = 3) -> tuple[list[dict], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-audio-eval-"))
    try:
        gen, ref = _make_sets(work)
        cache = work / "cache"
        spec = EvalSpec(cache_dir=str(cache))

        def ours():
            shutil.rmtree(cache, ignore_errors=True)
            return evaluate_dataset(gen, spec, ref)

        same = _agreement(ours().figures, direct_calls(gen, ref, spec))  # also the warm-up
        t_ours, t_direct = interleaved(ours, lambda: direct_calls(gen, ref, spec), repeats)
        t_warm = [timed(evaluate_dataset, gen, spec, ref)[0] for _ in range(repeats)]
        rows = [row("audio_evaluation_full_vs_direct_calls", 1 / median(t_ours),
                    1 / median(t_direct), "evaluations/s", repeats),
                row("audio_evaluation_second_run_vs_first", 1 / median(t_warm),
                    1 / median(t_ours), "evaluations/s", repeats)]
        notes = [f"- audio evaluation: {NUM_SCAPES} vs {NUM_SCAPES} tones-world soundscapes of 4 s; "
                 f"ours (all default metrics, empty cache) median {median(t_ours):.2f} s; direct "
                 f"classifier passes + torch-fidelity FAD/KID/IS/PRC + sed_eval event F1 "
                 f"{median(t_direct):.2f} s: ours = {median(t_ours) / median(t_direct):.2f}x; "
                 f"ours again on unchanged data {median(t_warm):.3f} s "
                 f"({median(t_ours) / median(t_warm):.0f}x faster). Same figures both ways: {same}"]
        return rows, notes
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for line in run()[1]:
        print(line)
