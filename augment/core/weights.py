"""Where a backend's weights come from: a local folder, the embedded assets, or a hub id already in
the local Hugging Face cache (never downloaded at run time when offline), and their hash."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download

from augment.core.io import sha256_tree


def weights_hash(folder: str | Path) -> str:
    """sha256 over the model's safetensors files (names and bytes), 16 hex digits."""
    return sha256_tree(folder)[:16]


def resolve_model_path(path: str | None, embedded: Path | None,
                       field: str = "model.path") -> Path:
    """A local folder as given, the embedded weights for None, or a hub id from the local cache.

    Hub ids resolve through ``huggingface_hub.snapshot_download``; offline (HF_HUB_OFFLINE=1 or no
    network) a model that is not in the cache is an error that says how to supply a local folder
    (in the config ``field``).
    """
    if path is None:
        if embedded is None:
            raise FileNotFoundError(f"{field}: this backend has no embedded weights; set a hub id "
                                    "or a local folder")
        return embedded
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"{field}: {local} is a file; expected a diffusers folder")
        return local
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise FileNotFoundError(f"{field}: model folder {local} does not exist")
    try:
        return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    except Exception as exc:  # offline, unknown repo, no auth: all end the same way for a user
        raise FileNotFoundError(
            f"cannot load model {path!r} from the Hugging Face hub ({type(exc).__name__}); "
            f"download it where you have network (huggingface-cli download {path} --local-dir "
            f"DIR) and set {field} to that local folder") from None


def check_job_weights(job) -> None:
    """Resolve every place ``job`` loads weights from (the model's folders or cached hub ids, the
    verifier's checkpoint) without loading them: run before any shard starts, so that a wrong path
    is one error naming the job and the field, and nothing is written."""
    try:
        for name in job.model.weight_fields:
            if getattr(job.model, name) is not None:
                resolve_model_path(getattr(job.model, name), None, f"model.{name}")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"jobs {job.name}: {exc}") from None
    if job.verify.resolved_method(job.model.backend) == "none":
        return
    for name in ("clip_checkpoint", "clap_model"):  # image / audio verifier weights
        value = getattr(job.verify, name, None)
        if value and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"jobs {job.name}: verify.{name}: {value} does not exist")
