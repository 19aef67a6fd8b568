"""Dask worker plugins of the local cluster ``flows.runners`` starts (imported only for Dask)."""

from __future__ import annotations

import os

from distributed import WorkerPlugin


class PinDevice(WorkerPlugin):
    """Dask worker plugin of a local cluster: worker ``i`` sees only GPU ``gpu_ids[i % n]``
    (``CUDA_VISIBLE_DEVICES``, set before any task initialises CUDA), so ``device: cuda`` in a
    shard means that worker's own GPU."""

    name = "synthmill-pin-device"

    def __init__(self, gpu_ids: list[int]):
        self.gpu_ids = list(gpu_ids)

    def setup(self, worker) -> None:
        index = worker.name if isinstance(worker.name, int) else 0
        os.environ["CUDA_VISIBLE_DEVICES"] = str(self.gpu_ids[index % len(self.gpu_ids)])
