"""synthmill generation: layouts, backends, samplers and dataset writers."""

__version__ = "0.1.0"
