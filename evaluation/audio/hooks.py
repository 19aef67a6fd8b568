"""The audio modality's part of evaluation (``evaluation.modality.ModalityHooks``)."""

from __future__ import annotations

from evaluation.audio.audit import run_audit
from evaluation.audio.extractors import plan_extractors
from evaluation.audio.pictures import dataset_pictures, spectrogram_png
from evaluation.audio.sets import open_dataset, open_path
from evaluation.modality import ModalityHooks


class AudioHooks(ModalityHooks):
    """Audio: soundfile-decoded sets at 16 kHz (synthmill audio datasets, folders of .wav/.flac),
    the tones classifier and CLAP extractors, the pitch audit, spectrograms and players."""

    open_dataset = staticmethod(open_dataset)
    open_path = staticmethod(open_path)
    extractors = staticmethod(plan_extractors)
    audit = staticmethod(run_audit)
    pictures = staticmethod(dataset_pictures)
    preview = staticmethod(spectrogram_png)


AUDIO = AudioHooks()
