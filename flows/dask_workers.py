"""The local Dask cluster ``flows.runners`` starts: its task runner and worker plugins (imported
only for Dask)."""

from __future__ import annotations

import os
import signal

from distributed import WorkerPlugin
from prefect_dask import DaskTaskRunner


class LocalClusterTaskRunner(DaskTaskRunner):
    """prefect-dask's runner on a local cluster that gives this process its environment back.

    Before spawning a worker, distributed's nanny writes the worker's settings into the parent's
    ``os.environ`` (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1,
    MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED) and never takes them back: every process this one
    started afterwards, a CLI run in a subprocess or a process pool, ran torch on one thread
    (slower, and with other float roundings than the same work here). They are put back as they
    were once the workers have started, and again when the runner ends (a worker restarted
    during the run writes them again)."""

    def __enter__(self):
        self._environment = {key: os.environ.get(key) for key in self._pre_spawn_keys()}
        try:
            return super().__enter__()
        finally:
            self._restore()

    def __exit__(self, *args) -> None:
        try:
            super().__exit__(*args)
        finally:
            self._restore()

    @staticmethod
    def _pre_spawn_keys() -> list[str]:
        """What the nanny writes: ``distributed.nanny.pre-spawn-environ``, and the hash seed."""
        import dask

        return [*(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}),
                "PYTHONHASHSEED"]

    def _restore(self) -> None:
        for key, value in self._environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


class IgnoreCtrlC(WorkerPlugin):
    """Dask worker plugin of a local cluster: the worker process ignores SIGINT. A terminal's
    Ctrl-C goes to the whole process group; the parent stops the run and closes the cluster, and
    each worker that took the signal too printed a KeyboardInterrupt traceback of its own."""

    name = "synthmill-ignore-ctrl-c"

    def setup(self, worker) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
