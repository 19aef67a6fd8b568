"""Task runner from ``RunnerSpec``: Prefect's thread pool, or an existing Dask / Ray engine."""

from __future__ import annotations

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED
from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import RunnerSpec


def api_url() -> str | None:
    """The Prefect API this process talks to; the temporary local server is started here when no
    ``PREFECT_API_URL`` is set, so that worker processes can be pointed at it (each would start a
    server of its own otherwise)."""
    url = PREFECT_API_URL.value()
    if url or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return url or None
    from prefect.server.api.server import SubprocessASGIServer  # what get_client() starts too

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


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
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": spec.max_workers, "threads_per_worker": 1, "processes": True,
            "env": {"PREFECT_API_URL": url} if url else {}})
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise RuntimeError("runner.kind: ray needs the prefect-ray package "
                           "(pip install prefect-ray)") from None
    return RayTaskRunner(address=spec.address) if spec.address else RayTaskRunner()
