"""Diffusers pipelines of the embedded audio generators."""
