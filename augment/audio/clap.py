"""The one CLAP path of synthmill's audio: loading, embeddings and zero-shot scores, shared by
generation-time verification (``clap_scores``) and evaluation (CLAPScore, zero-shot accuracy), so
both judge a clip by the same model, resampling and template.

CLAP (Contrastive Language-Audio Pretraining; Wu et al. 2023, "Large-scale Contrastive
Language-Audio Pretraining with Feature Fusion and Keyword-to-Caption Augmentation", the LAION-CLAP
checkpoints such as ``laion/clap-htsat-unfused``) through ``transformers.ClapModel`` and
``ClapProcessor``, from a local folder only (no hub download here), safetensors weights only,
float32, loaded once per process and device.

Audio reaches the model as its processor expects: resampled from 16 kHz to the feature extractor's
rate (48 kHz for LAION-CLAP) with ``torchaudio.functional.resample``; a clip shorter than the
extractor's window (10 s) is repeated to fill it, a longer one is cut to its first window here (the
extractor would crop at random). ``is_longer`` is then False for every clip, as it truly is (the
extractor would flag a random clip of a short batch for fused models, making a clip's embedding
depend on its batch).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from transformers import ClapModel, ClapProcessor

from augment.audio.soundscape import Event
from augment.audio.world import SAMPLE_RATE
from augment.core.weights import weights_hash

TEMPLATE = "the sound of {phrase}"
"""Zero-shot prompt of a class; ``{phrase}`` is an event phrase, e.g. "a high beep"."""

_LOAD_LOCK = threading.Lock()
_HOW_TO_SUPPLY = ("a local folder of a LAION CLAP checkpoint in transformers format with "
                  "model.safetensors (e.g. huggingface-cli download laion/clap-htsat-unfused "
                  "--local-dir DIR on a machine with internet)")


@dataclass(frozen=True)
class Clap:
    """A loaded CLAP model (eval mode, float32), its processor, and a hash of its weights (16 hex
    digits over the folder's safetensors: a key for feature caches)."""

    model: ClapModel
    processor: ClapProcessor
    folder: Path
    weights: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        """The rate the audio tower's features are computed at (48 kHz for LAION-CLAP)."""
        return int(self.processor.feature_extractor.sampling_rate)


def load_clap(folder: str | Path, device: str | torch.device = "cpu",
              field: str = "verify.clap_model") -> Clap:
    """The CLAP model and processor in ``folder`` on ``device``, loaded once per process.

    Raises ``FileNotFoundError`` naming the folder (and the config ``field`` to set) when it does
    not exist or holds no loadable safetensors CLAP checkpoint.
    """
    if folder is None:
        raise FileNotFoundError(f"{field}: no CLAP model given; set it to {_HOW_TO_SUPPLY}")
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{field}: CLAP model folder {path} does not exist; set it to "
                                f"{_HOW_TO_SUPPLY}")
    try:
        with _LOAD_LOCK:
            return _load_clap(str(path), str(torch.device(device)))
    except (OSError, ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FileNotFoundError(f"{field}: cannot load a CLAP model (safetensors) from {path}: "
                                f"{reason}") from exc


@lru_cache(maxsize=2)
def _load_clap(folder: str, device: str) -> Clap:
    model = ClapModel.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                      dtype=torch.float32)
    processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
    return Clap(model.eval().to(device), processor, Path(folder), weights_hash(folder))


def _features(clap: Clap, output) -> torch.Tensor:
    """Unit-norm projected features from ``get_*_features`` (a tensor in transformers 4, an output
    with ``pooler_output`` in 5)."""
    features = output.pooler_output if hasattr(output, "pooler_output") else output
    return F.normalize(features.float(), dim=-1)


@torch.no_grad()
def embed_audio(clap: Clap, waves: np.ndarray | list[np.ndarray], sample_rate: int = SAMPLE_RATE,
                batch_size: int = 32) -> np.ndarray:
    """Unit-norm CLAP audio embeddings (B, D) float32 of ``waves``.

    ``waves``: float (B, N) or a list of B 1-D arrays (lengths may differ) in [-1, 1] at
    ``sample_rate`` (16 kHz by default), each resampled to the model's rate and cut to its window.
    Rows do not depend on ``batch_size`` or on the other waves beyond float rounding.
    """
    fe = clap.processor.feature_extractor
    window = int(fe.nb_max_samples)  # at the model's rate
    resampled = []
    for i, wave in enumerate(waves):
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if wave.ndim != 1 or wave.numel() == 0:
            raise ValueError(f"wave {i}: expected a non-empty 1-D waveform, got shape "
                             f"{tuple(wave.shape)}")
        if sample_rate != fe.sampling_rate:
            # cut before resampling too, so the window's samples do not depend on what follows
            wave = wave[:int(np.ceil(window * sample_rate / fe.sampling_rate))]
            wave = torchaudio.functional.resample(wave, sample_rate, fe.sampling_rate)
        resampled.append(wave[:window].numpy())
    parts = [np.zeros((0, clap.model.config.projection_dim), np.float32)]
    for start in range(0, len(resampled), batch_size):
        chunk = resampled[start:start + batch_size]
        inputs = fe(chunk, sampling_rate=fe.sampling_rate, return_tensors="pt")
        longer = torch.zeros((len(chunk), 1), dtype=torch.bool)  # every wave fits the window
        output = clap.model.get_audio_features(
            input_features=inputs["input_features"].to(clap.device, torch.float32),
            is_longer=longer.to(clap.device))
        parts.append(_features(clap, output).cpu().numpy())
    return np.concatenate(parts)


@torch.no_grad()
def embed_text(clap: Clap, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Unit-norm CLAP text embeddings (T, D) float32 of ``texts``."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not one string")
    parts = [np.zeros((0, clap.model.config.projection_dim), np.float32)]
    for start in range(0, len(texts), batch_size):
        tokens = clap.processor.tokenizer(list(texts[start:start + batch_size]), padding=True,
                                          truncation=True, return_tensors="pt").to(clap.device)
        output = clap.model.get_text_features(input_ids=tokens["input_ids"],
                                              attention_mask=tokens["attention_mask"])
        parts.append(_features(clap, output).cpu().numpy())
    return np.concatenate(parts)


def zero_shot(clap: Clap, audio: np.ndarray, text: np.ndarray) -> np.ndarray:
    """(N, K) float64 probabilities ``softmax(logit_scale_a * cos)`` of N audio embeddings over
    K text embeddings (unit-norm), with the model's audio-to-text logit scale."""
    scale = float(clap.model.logit_scale_a.detach().exp())
    logits = scale * np.asarray(audio, np.float64) @ np.asarray(text, np.float64).T
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def clap_scores(clap: Clap, clips: np.ndarray, events: list[Event], categories: list[str],
                template: str = TEMPLATE) -> list[dict]:
    """Zero-shot verification of each event's clip: per event ``verify_clap``, the probability of
    its own class among ``categories`` (each as ``template`` of the event's phrase with that class:
    same pitch band, other sound), and ``clap_pred``, the most probable class.

    ``clips``: float (E, N) at 16 kHz, clip e holding event e in its first
    ``round(duration * 16000)`` samples (only those are embedded). A clip that is not finite
    scores 0.0 with no prediction.
    """
    unknown = sorted({e.label for e in events} - set(categories))
    if unknown:
        raise ValueError(f"event classes {unknown} are not among the categories {categories}")
    scores: list[dict] = [{"verify_clap": 0.0, "clap_pred": None} for _ in events]
    waves = [np.asarray(clip[:int(round(event.duration * SAMPLE_RATE))])
             for clip, event in zip(clips, events)]
    rows = [i for i, wave in enumerate(waves) if np.isfinite(wave).all()]
    if not rows:
        return scores
    audio = embed_audio(clap, [waves[i] for i in rows])
    prompts = [[template.format(phrase=replace(events[i], label=c).phrase) for c in categories]
               for i in rows]
    unique = list(dict.fromkeys(p for row in prompts for p in row))
    text = dict(zip(unique, embed_text(clap, unique)))
    for j, i in enumerate(rows):
        probs = zero_shot(clap, audio[j:j + 1], np.stack([text[p] for p in prompts[j]]))[0]
        scores[i] = {"verify_clap": float(probs[categories.index(events[i].label)]),
                     "clap_pred": categories[int(probs.argmax())]}
    return scores
