"""Task runner from ``RunnerSpec``: Prefect's thread pool, or an existing Dask / Ray engine."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import RunnerSpec


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
        return DaskTaskRunner(cluster_kwargs={"n_workers": spec.max_workers})
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise RuntimeError("runner.kind: ray needs the prefect-ray package "
                           "(pip install prefect-ray)") from None
    return RayTaskRunner(address=spec.address) if spec.address else RayTaskRunner()
