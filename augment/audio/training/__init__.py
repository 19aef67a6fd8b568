"""Trainers of the embedded audio models, on real tones-world clips rendered from a seed."""
