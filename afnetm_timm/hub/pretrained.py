"""``pretrained=True`` for AFNet-M: safetensors only, clear errors, no retry loop for unpublished tags.

The AFNet-M factories call `prepare_pretrained` before timm builds and loads the model. It resolves the
weight source exactly as timm will (registry tag → Hub repo, ``hf-hub:``, ``local-dir:``, ``file``),
checks that it holds a valid ``model.safetensors`` — fetching it into the Hugging Face cache when it
comes from the Hub — and pins timm to that file, so timm never falls back to a pickle. A state-dict
check then reports missing keys, unexpected keys and wrong shapes by name instead of loading
partially (timm loads non-strictly when ``num_classes`` changes).

Registry tags whose weights are not published fail at once, unless the local Hugging Face cache
already holds their files (a seeded or pre-downloaded cache): there is nothing to download.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import resolve_pretrained_cfg
from timm.models._builder import _resolve_pretrained_source
from timm.models._hub import hf_split

from .errors import UnsafeWeightsError, WeightsNotAvailableError
from .weights import PICKLE_SUFFIXES, SAFE_WEIGHTS_NAME, check_state_dict, find_pickle_files, read_safetensors

__all__ = ["fetch_hub_weights", "check_weights_folder", "prepare_pretrained"]

#: Pickle weight files that timm or transformers would otherwise look for in a Hub repo.
_PICKLE_CANDIDATES = ("pytorch_model.bin", "pytorch_model.pth", "model.pth", "model.pt", "model.ckpt",
                      "open_clip_pytorch_model.bin")


def _cache_dir(cache_dir: str | os.PathLike | None) -> str:
    return str(cache_dir) if cache_dir else hf_constants.HF_HUB_CACHE  # read now: tests and users may change it


def _cached_pickles(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None) -> list[str]:
    found = []
    for name in _PICKLE_CANDIDATES:
        hit = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision)
        if isinstance(hit, str):
            found.append(name)
    return found


def _remote_pickles(repo_id: str, revision: str | None) -> list[str]:
    try:
        files = huggingface_hub.HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # best effort, only to improve the message
        return []
    return sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))


def fetch_hub_weights(
    hf_hub_id: str,
    name: str,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    published: bool = True,
) -> Path:
    """Download (or find in the cache) ``model.safetensors`` of a Hub repo and validate it.

    Args:
        hf_hub_id: ``org/name`` or ``org/name@revision``.
        name: what the user asked for, for messages (``afnet_m.bu3dfe``, ``hf-hub:org/name``).
        cache_dir: Hugging Face cache folder (default: huggingface_hub's, read at call time).
        local_files_only: only look in the cache (no network).
        published: whether the repo is known to hold weights (for the message).

    Raises:
        WeightsNotAvailableError: not published / not cached / no such repo / no ``model.safetensors``.
        UnsafeWeightsError: the repo has only pickle weights.
        WeightsMismatchError: the file is not valid safetensors.
    """
    repo_id, revision = hf_split(hf_hub_id)
    offline = hf_constants.HF_HUB_OFFLINE or local_files_only
    where = f"the Hugging Face Hub repo '{repo_id}'" + (f" (revision {revision})" if revision else "")
    try:
        path = huggingface_hub.hf_hub_download(
            repo_id, SAFE_WEIGHTS_NAME, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
            library_name="afnetm-timm",
        )
    except LocalEntryNotFoundError as err:
        pickles = _cached_pickles(repo_id, revision, cache_dir)
        if pickles:
            raise UnsafeWeightsError(
                f"{name}: {where} holds only pickle weights ({', '.join(pickles)}) in the local cache; AFNet-M "
                f"loads only {SAFE_WEIGHTS_NAME} (pickle files can run code when loaded)"
            ) from err
        if not published:
            raise WeightsNotAvailableError(
                f"{name}: weights not published. No trained and measured weights have been published to {where} "
                f"yet, and its {SAFE_WEIGHTS_NAME} is not in the local Hugging Face cache "
                f"({_cache_dir(cache_dir)}). Use pretrained=False (random initialisation), or, if the weights have "
                f"been published since this afnetm-timm release, load them with "
                f"timm.create_model('hf-hub:{repo_id}', pretrained=True) or upgrade afnetm-timm."
            ) from None
        reason = ("offline mode is on (HF_HUB_OFFLINE=1)" if offline
                  else "the Hub could not be reached")
        raise WeightsNotAvailableError(
            f"{name}: {SAFE_WEIGHTS_NAME} of {where} is not in the local Hugging Face cache "
            f"({_cache_dir(cache_dir)}) and {reason}. Download it once where the Hub is reachable, or copy a "
            f"cache that holds it, or use pretrained=False."
        ) from None
    except EntryNotFoundError as err:  # the repo exists online but has no model.safetensors
        pickles = _remote_pickles(repo_id, revision)
        if pickles:
            raise UnsafeWeightsError(
                f"{name}: {where} has only pickle weights ({', '.join(pickles)}); AFNet-M loads only "
                f"{SAFE_WEIGHTS_NAME} (pickle files can run code when loaded)"
            ) from err
        raise WeightsNotAvailableError(f"{name}: {where} has no {SAFE_WEIGHTS_NAME}") from err
    except GatedRepoError as err:
        raise WeightsNotAvailableError(
            f"{name}: {where} is gated: accept its terms on the Hub and log in (hf auth login or HF_TOKEN)"
        ) from err
    except RepositoryNotFoundError as err:
        raise WeightsNotAvailableError(
            f"{name}: {where} does not exist or is private (weights not published, or log in for a private repo)"
        ) from err
    except RevisionNotFoundError as err:
        raise WeightsNotAvailableError(f"{name}: {where} has no revision {revision!r}") from err
    except HFValidationError as err:
        raise WeightsNotAvailableError(f"{name}: {hf_hub_id!r} is not a valid Hub repo id: {err}") from err
    read_safetensors(path)  # corrupt / truncated / disguised pickle → clear error before timm loads it
    return Path(path)


def check_weights_folder(folder: str | os.PathLike, name: str | None = None) -> Path:
    """The ``model.safetensors`` of a local folder (``local-dir:``), validated; pickle-only folders are refused."""
    folder = Path(folder)
    name = name or f"local-dir:{folder}"
    if not folder.is_dir():
        raise WeightsNotAvailableError(f"{name}: {folder} is not a folder")
    weights = folder / SAFE_WEIGHTS_NAME
    if not weights.is_file():
        pickles = find_pickle_files(folder)
        if pickles:
            raise UnsafeWeightsError(
                f"{name}: the folder has only pickle weights ({', '.join(p.name for p in pickles)}); AFNet-M loads "
                f"only {SAFE_WEIGHTS_NAME} (pickle files can run code when loaded). Export with `afnetm hub export`."
            )
        raise WeightsNotAvailableError(f"{name}: no {SAFE_WEIGHTS_NAME} in {folder}")
    read_safetensors(weights)
    return weights


def _classifier_prefixes(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    classifier = cfg.get("classifier")
    if not classifier:
        return ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{n}." for n in names)


def _check_loaded_state(
    state_dict: dict[str, Any],
    model: Any,
    source: str,
    target: str,
    pretrained_num_classes: int | None,
    classifier_prefixes: tuple[str, ...],
    inner: Callable | None = None,
) -> dict[str, Any]:
    """timm ``pretrained_filter_fn``: run a caller's filter, then check keys and shapes against the model."""
    if inner is not None:
        try:
            state_dict = inner(state_dict, model)
        except TypeError:
            state_dict = inner(state_dict)
    ignore = classifier_prefixes if getattr(model, "num_classes", None) != pretrained_num_classes else ()
    check_state_dict(model.state_dict(), state_dict, source, target, ignore_prefixes=ignore)
    return state_dict


def prepare_pretrained(
    variant: str,
    kwargs: dict[str, Any],
    published: Collection[str] = (),
) -> dict[str, Any]:
    """Check the weights timm would load for ``pretrained=True``; return the kwargs for ``build_model_with_cfg``.

    Args:
        variant: the registered architecture (``afnet_m``, ...).
        kwargs: the entrypoint's keyword arguments (``pretrained_cfg``, ``pretrained_cfg_overlay``,
            ``cache_dir``, model arguments).
        published: ``arch.tag`` names whose weights are on the Hub; other registry tags are served only
            from the local cache.

    Returns:
        New kwargs: the resolved ``pretrained_cfg`` pinned to ``model.safetensors``, a state-dict check as
        ``pretrained_filter_fn``, and ``pretrained_backbone=False`` (the weights replace the ImageNet init).

    Raises:
        WeightsNotAvailableError: no weights for an untagged variant, an unpublished and uncached tag, ...
        UnsafeWeightsError: a pickle-only source, or a ``url``/``file`` that is not safetensors.
        WeightsMismatchError: a corrupt safetensors file (key/shape problems surface when timm loads).
    """
    kwargs = dict(kwargs)
    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    ).to_dict()
    load_from, location = _resolve_pretrained_source(cfg)
    tag = cfg.get("tag")
    arch_tag = f"{cfg.get('architecture') or variant}.{tag}" if tag else (cfg.get("architecture") or variant)
    if load_from == "hf-hub":
        hub_id = cfg["hf_hub_id"]
        from_registry = cfg.get("source") != "hf-hub"
        name = arch_tag if from_registry else f"hf-hub:{hub_id}"
        is_published = not from_registry or arch_tag in published
        fetch_hub_weights(hub_id, name, cache_dir=kwargs.get("cache_dir"), local_files_only=not is_published,
                          published=is_published)
        cfg["hf_hub_filename"] = SAFE_WEIGHTS_NAME  # timm loads exactly the file checked, never a pickle
        source = f"{SAFE_WEIGHTS_NAME} of hf-hub:{hub_id}"
    elif load_from == "local-dir":
        source = str(check_weights_folder(location))
    elif load_from == "file":
        path = Path(location)
        if not path.name.endswith(".safetensors"):
            raise UnsafeWeightsError(
                f"{arch_tag}: weight file {path} is not a .safetensors file; AFNet-M loads only safetensors "
                "(convert a trusted pickle with safetensors.torch.save_file(torch.load(...)))"
            )
        read_safetensors(path)
        source = str(path)
    elif load_from == "state_dict":
        source = "the state_dict in pretrained_cfg"
    elif load_from == "url":
        raise UnsafeWeightsError(
            f"{arch_tag}: AFNet-M does not load weights from URLs ({location}); use a Hub repo (hf-hub:), a folder "
            "(local-dir:) or a .safetensors file"
        )
    else:
        tags = [n for n in _registry_tags(variant) if n != variant]
        listed = ", ".join(f"{n}{' (published)' if n in published else ' (not published yet)'}" for n in tags)
        raise WeightsNotAvailableError(
            f"No pretrained weights exist for {arch_tag}: the untagged config has none; weights are chosen by tag "
            f"({listed or 'no tags for this variant'}). Use pretrained=False for random initialisation."
        )
    target = f"{variant}({_describe_args(kwargs)})"
    kwargs["pretrained_cfg"] = cfg
    kwargs["pretrained_filter_fn"] = functools.partial(
        _check_loaded_state, source=source, target=target, pretrained_num_classes=cfg.get("num_classes"),
        classifier_prefixes=_classifier_prefixes(cfg), inner=kwargs.get("pretrained_filter_fn"),
    )
    kwargs["pretrained_backbone"] = False
    return kwargs


def _registry_tags(variant: str) -> list[str]:
    import timm

    return timm.list_models(variant, pretrained=True, include_tags=True)


def _describe_args(kwargs: Mapping[str, Any]) -> str:
    skip = {"cache_dir", "pretrained_filter_fn", "pretrained_model_args", "device", "dtype", "features_only",
            "out_indices", "feature_cls"}
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in skip and v is not None)
