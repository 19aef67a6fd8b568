"""Trainers of the embedded image evaluation models (run offline; their outputs ship in evaluation/assets)."""
