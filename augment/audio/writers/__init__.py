"""Export an audio dataset folder's labels: DCASE strong labels (``dcase.py``), JAMS (``jams_writer.py``)."""
