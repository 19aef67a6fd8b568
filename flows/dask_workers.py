"""The local Dask cluster ``flows.runners`` starts: its task runner and worker plugins (imported
only for Dask)."""

from __future__ import annotations

import os
import signal

from distributed import WorkerPlugin
from prefect_dask import DaskTaskRunner

from augment.core.stopping import request_stop


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


class StopOnCtrlC(WorkerPlugin):
    """Dask worker plugin of a local cluster: a terminal's Ctrl-C, which reaches the workers too
    (one process group), stops their shards the way it stops one in this process.

    - SIGINT in the worker asks its generation to stop (``augment.core.stopping.request_stop``):
      the shard in flight ends at its next network block with nothing partial, the worker is
      idle again, and the cluster's close is quick. Before, the worker ignored SIGINT and the
      close waited 4 s for the busy worker, then killed it; with the default handler each worker
      printed a KeyboardInterrupt traceback.
    - tqdm's bars in the worker share a thread lock, not the multiprocessing lock tqdm makes by
      default: that lock is a named semaphore which the parent's resource tracker records, and a
      worker killed mid-shard never released it, so the tracker printed "There appear to be 2
      leaked semaphore objects" after the command's last line. Bars in one worker process are
      drawn from its own threads only."""

    name = "synthmill-stop-on-ctrl-c"

    def setup(self, worker) -> None:
        import threading

        from tqdm import tqdm

        signal.signal(signal.SIGINT, lambda signum, frame: request_stop())
        tqdm.set_lock(threading.RLock())
