"""``afnetm hub push``: upload a verified export folder to the Hugging Face Hub.

Publishes nothing that was not trained and measured: the folder must come from ``afnetm hub export``
with measured results (results on synthetic data only with ``allow_synthetic``), hold no pickle
file, have weights that fit its config and match the SHA-256 recorded at export, and a model card
that names the target repo. Pushing to the repo of a registry tag (``afnetm-timm/afnet_m.bu3dfe``)
also requires the weights and preprocessing to fit that tag, so ``timm.create_model("afnet_m.bu3dfe",
pretrained=True)`` loads them.

The token comes from the usual places (``HF_TOKEN``, or ``hf auth login``), or an explicit ``token``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import timm

from .errors import HubWeightsError, PublishRefusedError
from .export import EXPORT_FILES, ExportedFolder, check_repo_id, read_export
from .weights import SAFE_WEIGHTS_NAME, check_state_dict, read_safetensors, sha256_file

__all__ = ["check_publishable", "push_to_hub"]

#: pretrained_cfg fields that must agree between an export and the registry tag that points at its repo.
_TAG_FIELDS = ("num_classes", "input_size", "mean", "std", "interpolation", "crop_pct", "label_names")


def _registry_tags_for(repo_id: str) -> list[str]:
    """``arch.tag`` names whose registry cfg points at ``repo_id``."""
    from timm.models import get_pretrained_cfg

    import afnetm_timm  # noqa: F401  (registers the models)

    names = []
    for name in timm.list_models("afnet_m*", pretrained=True, include_tags=True):
        cfg = get_pretrained_cfg(name)
        if cfg is not None and cfg.hf_hub_id == repo_id:
            names.append(name)
    return names


def _norm(v: Any) -> Any:
    """JSON and Python values compared alike: tuples as lists, ints as floats."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _same(a: Any, b: Any) -> bool:
    return _norm(a) == _norm(b)


def _check_registry_tag(info: ExportedFolder, repo_id: str) -> None:
    for name in _registry_tags_for(repo_id):
        model = timm.create_model(name, device="meta")
        shapes, _ = read_safetensors(info.path / SAFE_WEIGHTS_NAME)
        try:
            check_state_dict(model.state_dict(), shapes, str(info.path / SAFE_WEIGHTS_NAME), f"the registry tag {name}")
        except HubWeightsError as err:
            raise PublishRefusedError(
                f"refusing to push to {repo_id}: timm.create_model('{name}', pretrained=True) loads this repo with "
                f"the registry's default arguments, and the exported weights do not fit them ({err})"
            ) from err
        exported = info.config.get("pretrained_cfg", {})
        for key in _TAG_FIELDS:
            if key in exported and not _same(exported[key], model.pretrained_cfg.get(key)):
                raise PublishRefusedError(
                    f"refusing to push to {repo_id}: the export's {key}={exported[key]!r} differs from the registry "
                    f"tag {name} ({model.pretrained_cfg.get(key)!r}), so the tag would preprocess inputs differently"
                )


def check_publishable(folder: str | os.PathLike, repo_id: str, allow_synthetic: bool = False) -> ExportedFolder:
    """Everything ``push_to_hub`` checks before uploading; returns the verified folder.

    Raises:
        PublishRefusedError: saying why (the underlying error chained).
    """
    folder = Path(folder)
    try:
        repo_id = check_repo_id(repo_id)
        info = read_export(folder)
    except (HubWeightsError, ValueError) as err:
        raise PublishRefusedError(f"refusing to push {folder}: {err}") from err
    if not info.measured:
        raise PublishRefusedError(
            f"refusing to push {folder}: it has no measured results (its model card says 'no measured results'). "
            "Publish only trained and measured weights: export again with --results RESULTS.json"
        )
    if info.synthetic_only and not allow_synthetic:
        raise PublishRefusedError(
            f"refusing to push {folder}: its results were all measured on synthetic data. Pass allow_synthetic=True "
            "(--allow-synthetic) to publish a demonstration repo; its card labels every result as synthetic"
        )
    if info.repo_id != repo_id:
        named = f"names {info.repo_id}" if info.repo_id else "names no repo"
        raise PublishRefusedError(
            f"refusing to push {folder} to {repo_id}: its model card {named}; export again with --repo-id {repo_id}"
        )
    _check_registry_tag(info, repo_id)
    return info


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    api: Any | None = None,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    allow_synthetic: bool = False,
    dry_run: bool = False,
) -> Any:
    """Upload an ``afnetm hub export`` folder to the Hub repo ``repo_id`` (created if missing).

    Args:
        folder: the export folder; verified by `check_publishable` first.
        repo_id: ``<org or user>/<name>``; must be the repo the model card names.
        api: a ``huggingface_hub.HfApi`` (or an object with ``create_repo`` and ``upload_folder``, e.g. a
            fake in tests); default: ``HfApi(token=token)``.
        token: Hub token; default: huggingface_hub's (``HF_TOKEN`` or the stored login).
        private: create the repo private.
        revision: branch to push to (created if missing).
        create_pr: open a pull request instead of committing to the branch.
        commit_message: default "Add <architecture> weights (afnetm-timm <version>)".
        allow_synthetic: allow a folder whose results are all on synthetic data.
        dry_run: verify only; return None without contacting the Hub.

    Returns:
        What ``api.upload_folder`` returns (a ``CommitInfo``), or None for a dry run.

    Raises:
        PublishRefusedError: the folder may not be published (see `check_publishable`).
    """
    info = check_publishable(folder, repo_id, allow_synthetic=allow_synthetic)
    if dry_run:
        return None
    from afnetm_timm import __version__

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="afnetm-timm", library_version=__version__)
    message = commit_message or f"Add {info.architecture} weights (afnetm-timm {__version__})"
    with tempfile.TemporaryDirectory(prefix="afnetm-push-") as staging:
        # upload a private copy of exactly the verified files (nothing else in the folder goes up)
        for name in EXPORT_FILES:
            shutil.copyfile(info.path / name, Path(staging) / name)
        if sha256_file(Path(staging) / SAFE_WEIGHTS_NAME) != info.record.get("weights_sha256"):
            raise PublishRefusedError(f"refusing to push {folder}: {SAFE_WEIGHTS_NAME} changed while being staged")
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        target = getattr(url, "repo_id", None) or repo_id
        if revision is not None:
            api.create_branch(target, branch=revision, exist_ok=True, repo_type="model")
        return api.upload_folder(
            repo_id=target, folder_path=staging, repo_type="model", revision=revision, create_pr=create_pr,
            commit_message=message,
        )
