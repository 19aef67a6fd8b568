"""A whole run: the dataset jobs (any modality), how they are evaluated, audited and reported, and
which task runner executes them. Only the CLI and the flows read this model; the library entry
points take its parts (a job, an ``EvalSpec``, ...).

``jobs`` is a list; each job says its ``modality`` (``image`` when it names none) and its ``role``:
``compare`` (evaluated, and compared with the other compared jobs), ``reference`` (made to be the
reference of the jobs of its modality) or ``audit`` (made for a bias audit). ``extends: NAME``
starts a job from the settings of an earlier job, its own settings merged over them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializeAsAny, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from augment.config.base import ConfigError, JobBase, Strict, deep_merge
from augment.core.registry import MODALITIES
from evaluation.config import AuditSpec, EvalSpec, ReportSpec

ROLES = ("compare", "reference", "audit")


class RunnerSpec(Strict):
    """Which Prefect task runner executes shards."""

    kind: Literal["threads", "dask", "ray"] = "threads"
    max_workers: int = Field(1, ge=1, le=1024, description="Shards in flight: threads (with 1, "
                             "each shard runs in the flow's own thread), or the worker processes "
                             "of a local Dask cluster.")
    address: str | None = Field(None, description="Existing Dask scheduler / Ray cluster address.")
    gpus_per_shard: float = Field(
        0, ge=0, description="GPUs one shard reserves: Dask worker resource 'GPU' (start workers "
                             "with --resources GPU=1), Ray num_gpus; 0 = none asked.")
    gpu_ids: list[int] | None = Field(
        None, description="Local Dask cluster with gpus_per_shard: the GPUs its workers get, one "
                          "each in turn (CUDA_VISIBLE_DEVICES); default: every GPU torch sees.")

    @model_validator(mode="after")
    def _gpus(self) -> "RunnerSpec":
        if self.gpus_per_shard and self.kind == "threads":
            raise ValueError("gpus_per_shard: needs kind dask or ray (threads share this "
                             "process's devices)")
        if self.kind == "dask" and not self.address and self.gpus_per_shard > 1:
            raise ValueError("gpus_per_shard: a local Dask cluster gives each worker one GPU; "
                             "ask for at most 1")
        if self.gpu_ids is not None and (self.kind != "dask" or self.address):
            raise ValueError("gpu_ids: only for a local Dask cluster (kind dask, no address)")
        return self


class ScheduleSpec(Strict):
    """When ``synthmill serve`` runs this config, and which flow: ``generate`` (a new version of
    each job's dataset), ``pipeline`` (the same, then evaluation, audits and the report) or
    ``evaluate`` (the report on the latest versions, generating nothing). Exactly one of ``cron``
    and ``interval``. Each run writes ``<out>/<job>/vNNNN/`` and moves ``<out>/<job>/latest`` only
    when it succeeded."""

    flow: Literal["generate", "pipeline", "evaluate"] = "generate"
    cron: str | None = Field(None, description="Cron expression, e.g. '0 3 * * *' (03:00 daily).")
    interval: float | None = Field(None, gt=0, description="Seconds between runs.")
    timezone: str = Field("UTC", description="IANA time zone of the cron expression.")
    name: str | None = Field(None, description="Deployment name (default: the config file's stem).")
    reseed: bool = Field(True, description="Version n draws from seed + n - 1 (new data each run); "
                                           "false: every version repeats the same samples.")
    jobs: list[str] | None = Field(None, description="Generate only these jobs (generate flow).")

    @model_validator(mode="after")
    def _when(self) -> "ScheduleSpec":
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron and interval")
        if self.cron is not None:
            from prefect.client.schemas.schedules import CronSchedule  # the check Prefect applies

            try:
                CronSchedule(cron=self.cron, timezone=self.timezone)
            except ValueError as exc:
                raise ValueError(f"cron / timezone: {_first_error(exc)}") from None
        return self


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    message = errors()[0]["msg"] if callable(errors) else str(exc)
    return message.removeprefix("Value error, ")


def _job(value: Any, handler, info) -> JobBase:
    """A job mapping -> the job model of its ``modality`` (image when it names none)."""
    if isinstance(value, JobBase):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("job", "expected a mapping of job settings")
    name = value.get("modality", "image")
    if name not in MODALITIES:
        raise PydanticCustomError("modality", "unknown modality {name}; allowed: {allowed}",
                                  {"name": repr(name), "allowed": MODALITIES.names()})
    return MODALITIES.get(name).job_model().model_validate(value)


Job = Annotated[SerializeAsAny[JobBase], WrapValidator(_job)]
"""A dataset job of any registered modality (``ImageJob``, ...), chosen by its ``modality``."""


class RunConfig(Strict):
    """A whole run: what to generate, where to write it, how to evaluate and execute it."""

    out: str = Field("datasets", description="Output folder for datasets.")
    jobs: list[Job] = Field(default_factory=list, description="The datasets to make, in order.")
    roles: dict[str, Literal[ROLES]] = Field(
        default_factory=dict, description="Role of each job by name (filled from each job's "
                                          "`role:`; compare when it names none).")
    evaluate: EvalSpec | None = None
    audits: list[AuditSpec] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    schedule: ScheduleSpec | None = Field(None, description="For `synthmill serve`.")

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        """Resolve ``extends`` and take each job's ``role`` out into ``roles``."""
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            return data
        jobs, done, roles = [], {}, dict(data.get("roles") or {})
        for i, raw in enumerate(data["jobs"]):
            if not isinstance(raw, dict):
                jobs.append(raw)
                continue
            raw = dict(raw)
            parent = raw.pop("extends", None)
            if parent is not None:
                if parent not in done:
                    raise ValueError(f"jobs.{i}.extends: no earlier job is named {parent!r}; "
                                     f"earlier jobs: {list(done)}")
                raw = deep_merge({k: v for k, v in done[parent].items() if k != "name"}, raw)
            role = raw.pop("role", None)
            if "name" in raw and role is not None:
                roles[raw["name"]] = role
            done[raw.get("name", f"#{i}")] = raw
            jobs.append(raw)
        return {**data, "jobs": jobs, "roles": roles}

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        names = [job.name for job in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"jobs: dataset names must differ, got {names}")
        unknown = set(self.roles) - set(names)
        if unknown:
            raise ValueError(f"roles: no job is named {sorted(unknown)}")
        for modality in {job.modality for job in self.jobs}:
            references = self.named("reference", modality)
            if len(references) > 1:
                raise ValueError(f"jobs: {modality} has {len(references)} reference jobs "
                                 f"({[j.name for j in references]}); keep one")
        if self.schedule and self.schedule.jobs:
            unknown = sorted(set(self.schedule.jobs) - set(names))
            if unknown:
                raise ValueError(f"schedule.jobs: no job is named {unknown}; jobs: {names}")
        if self.schedule and self.schedule.flow != "generate" and self.evaluate is None:
            raise ValueError(f"schedule.flow: {self.schedule.flow} needs an evaluate: section")
        for i, audit in enumerate(self.audits):
            if self.roles.get(audit.dataset) != "audit":
                raise ValueError(f"audits.{i}.dataset: {audit.dataset!r} is not a job with "
                                 "role: audit")
            try:
                audit.check_modality(self.job(audit.dataset).modality, audit.dataset)
            except ValueError as exc:
                raise ValueError(f"audits.{i}.{exc}") from None
        return self

    def role(self, job) -> str:
        return self.roles.get(job.name, "compare")

    def named(self, role: str, modality: str | None = None) -> list:
        """The jobs of ``role`` (of ``modality`` when given), in order."""
        return [job for job in self.jobs if self.role(job) == role
                and (modality is None or job.modality == modality)]

    def selected_jobs(self, names: list[str] | None = None) -> list:
        """The jobs named ``names``, in that order, or all of them."""
        return [self.job(name) for name in names] if names else self.jobs

    def job(self, name: str):
        for job in self.jobs:
            if job.name == name:
                return job
        raise ConfigError(f"jobs: no job is named {name!r}")
