"""Task runner from ``RunnerSpec``: Prefect's thread pool, or an existing Dask / Ray engine."""

from __future__ import annotations

import os
from contextlib import nullcontext

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED
from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import RunnerSpec


def configured_server() -> str | None:
    """The API URL of the Prefect server the user configured (``PREFECT_API_URL`` from the
    environment or the active profile), or None: this process would use the temporary one."""
    return PREFECT_API_URL.value() or None


def api_url() -> str | None:
    """The Prefect API this process talks to; the temporary local server is started here when no
    ``PREFECT_API_URL`` is set, so that worker processes can be pointed at it (each would start a
    server of its own otherwise)."""
    url = configured_server()
    if url or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return url or None
    from prefect.server.api.server import SubprocessASGIServer  # what get_client() starts too

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def _local_gpu_ids(spec: RunnerSpec) -> list[int]:
    if spec.gpu_ids is not None:
        return spec.gpu_ids
    import torch

    found = list(range(torch.cuda.device_count()))
    if not found:
        raise RuntimeError("runner.gpus_per_shard: no CUDA GPU is visible here; set "
                           "runner.gpu_ids, or gpus_per_shard: 0")
    return found


def make_task_runner(spec: RunnerSpec):
    if spec.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=spec.max_workers)
    if spec.kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise RuntimeError("runner.kind: dask needs the prefect-dask package "
                               "(pip install prefect-dask)") from None
        if spec.address:
            return DaskTaskRunner(address=spec.address)
        # a local cluster: one single-threaded worker process per shard in flight, each reporting
        # to this process's Prefect server
        url = api_url()
        from flows.dask_workers import LocalClusterTaskRunner, PinDevice, StopOnCtrlC

        kwargs = {"n_workers": spec.max_workers, "threads_per_worker": 1, "processes": True,
                  "env": {"PREFECT_API_URL": url} if url else {}, "plugins": {StopOnCtrlC()}}
        if spec.gpus_per_shard:
            kwargs["resources"] = {"GPU": 1}
            kwargs["plugins"].add(PinDevice(_local_gpu_ids(spec)))

        return LocalClusterTaskRunner(cluster_kwargs=kwargs)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise RuntimeError("runner.kind: ray needs the prefect-ray package "
                           "(pip install 'synthmill[ray]')") from None
    return RayTaskRunner(address=spec.address) if spec.address else RayTaskRunner()


def shard_resources(spec: RunnerSpec | None):
    """Context in which shard tasks are submitted: they reserve ``gpus_per_shard`` GPUs (a Dask
    resource annotation, Ray ``num_gpus``), or nothing."""
    if spec is None or not spec.gpus_per_shard:
        return nullcontext()
    if spec.kind == "dask":
        import dask

        return dask.annotate(resources={"GPU": spec.gpus_per_shard})
    from prefect_ray.context import remote_options

    return remote_options(num_gpus=spec.gpus_per_shard)
