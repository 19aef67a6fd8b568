"""Trainers of the embedded evaluation models (run offline; their outputs ship in evaluation/assets)."""
