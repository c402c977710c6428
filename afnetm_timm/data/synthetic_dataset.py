"""A synthetic 2D+3D expression dataset we can ship: procedural (or morphable-model) 3D face scans of
many identities with the six expressions at four intensity levels, rendered through the real
preprocessing (`preprocess_scan`) into the same cache ``afnetm preprocess`` writes.

Levels 1-4 mimic BU-3DFE's (intensity 0.4, 0.7, 1.0, 1.3 of the procedural expression, jittered
±15 % per sample); every scan gets a random head pose (±``pose_degrees`` about each axis, a few mm of
shift) that the pipeline's pose normalisation has to undo. Identities are subjects
``synth000``, ``synth001``, ...; sample ids ``synth007_HA03`` follow BU-3DFE's naming.

With ``morphable_model=PATH`` (a Surrey-Face-Model-layout ``.npz`` such as ``shared/data/sfm``) each
identity draws random shape coefficients and the expression blendshapes replace the procedural ones.

Numbers measured on this data are *synthetic*: they show the pipeline works and which variants learn
what, never accuracy on real faces.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_int
from ..packing import EXPRESSION_CODES, EXPRESSION_NAMES
from .batch import BatchReport, prepare_cache, run_batch, write_cached_sample
from .pipeline import check_preprocess_options, preprocess_scan
from .scan import FaceScan
from .synthetic import check_morphable_model, face_scan_from_morphable_model, synthetic_face_scan

__all__ = ["INTENSITY_LEVELS", "build_synthetic_dataset", "synthetic_scan"]

#: BU-3DFE-like intensity levels -> strength of the procedural expression.
INTENSITY_LEVELS: dict[int, float] = {1: 0.4, 2: 0.7, 3: 1.0, 4: 1.3}

#: Allowed ranges of the generation options (checked once, before any work).
N_POINTS_RANGE = (200, 2_000_000)
TEXTURE_SIZE_RANGE = (8, 8192)
IDENTITY_DIMS = 20  # shape coefficients per identity drawn from a morphable model


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-degrees, degrees, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def synthetic_scan(
    subject: int,
    expression: str,
    level: int,
    *,
    seed: int = 0,
    n_points: int = 10000,
    texture_size: int = 512,
    pose_degrees: float = 8.0,
    morphable_model: str | os.PathLike | None = None,
    identity_dims: int = 20,
) -> FaceScan:
    """One synthetic scan: identity ``subject``, an expression of `EXPRESSION_NAMES`, BU-3DFE-like ``level`` 1-4.

    Deterministic in (subject, expression, level, seed).
    """
    if level not in INTENSITY_LEVELS:
        raise ValueError(f"level must be one of {sorted(INTENSITY_LEVELS)}, got {level}")
    code = EXPRESSION_NAMES.index(expression)
    rng = np.random.default_rng([seed, subject, code, level])
    strength = INTENSITY_LEVELS[level] * rng.uniform(0.85, 1.15)
    if morphable_model is None:
        scan = synthetic_face_scan(expression, strength, identity_seed=seed * 100003 + subject,
                                   n_points=n_points, texture_size=texture_size)
    else:
        identity = np.random.default_rng([seed, subject]).standard_normal(identity_dims)
        scan = face_scan_from_morphable_model(morphable_model, expression, weight=strength, identity_coeffs=identity,
                                              texture_size=texture_size, color_seed=seed * 100003 + subject)
    rotation = _rotation(rng, pose_degrees)
    shift = rng.uniform(-5, 5, 3)
    centre = scan.vertices.mean(axis=0)

    def move(p: np.ndarray) -> np.ndarray:
        return (p - centre) @ rotation.T + centre + shift

    metadata = dict(scan.metadata, subject=f"synth{subject:03d}", intensity=level, strength=float(strength),
                    pose_degrees=float(pose_degrees))
    return replace(scan, vertices=move(scan.vertices), landmarks={k: move(v) for k, v in scan.landmarks.items()},
                   metadata=metadata)


def _make_one(sid: str, subject: int, expression: str, level: int, out_dir: Path, size: int, previews: bool,
              options: dict[str, Any]) -> tuple[str, str, str]:
    samples = out_dir / "samples"
    npz_path, meta_path = samples / f"{sid}.npz", samples / f"{sid}.json"
    if npz_path.is_file() and meta_path.is_file():
        return sid, "skipped", ""
    try:
        scan = synthetic_scan(subject, expression, level, **options)
        sample = preprocess_scan(scan, size=size)
    except Exception as err:  # noqa: BLE001 - a batch job reports every bad item and goes on
        return sid, "failed", f"{type(err).__name__}: {err}"
    model = options.get("morphable_model")
    meta = {
        "id": sid,
        "source": f"synthetic:{'morphable-model ' + Path(model).name if model else 'procedural'}",
        "dataset": "synthetic",
        "subject": scan.metadata["subject"],
        "expression": expression,
        "intensity": level,
        "size": size,
        "synthetic": {k: scan.metadata[k] for k in ("strength", "pose_degrees")},
        "preprocessing": sample.info,
    }
    write_cached_sample(out_dir, sid, sample, meta, previews)
    return sid, "done", ""


def build_synthetic_dataset(
    out_dir: str | os.PathLike,
    subjects: int = 60,
    levels: Sequence[int] = (1, 2, 3, 4),
    size: int = 224,
    *,
    seed: int = 0,
    n_points: int = 10000,
    texture_size: int = 512,
    pose_degrees: float = 8.0,
    morphable_model: str | os.PathLike | None = None,
    jobs: int | None = None,
    previews: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Write ``subjects`` × 6 expressions × ``levels`` synthetic samples into the cache ``out_dir``.

    Resumable (cached samples are skipped) and atomic per sample, like ``afnetm preprocess``; the
    index is rewritten at the end. ``morphable_model``: an ``.npz`` face model to draw identities from
    instead of the procedural face.

    Every argument is checked once, before the cache folder is created or anything written (ranges:
    ``size`` `pipeline.MIN_SIZE`-`pipeline.MAX_SIZE`, ``n_points`` `N_POINTS_RANGE`, ``texture_size``
    `TEXTURE_SIZE_RANGE`, ``seed`` >= 0, ``pose_degrees`` 0-90; the morphable model's whole layout by
    `synthetic.check_morphable_model`). The options that shape the samples (size, seed, n_points,
    texture_size, pose_degrees, the morphable model's SHA-256, the preprocessing defaults) are recorded in
    ``out_dir/cache.json``; resuming a cache made with other options is an error (`batch.prepare_cache`).
    More ``subjects`` or other ``levels`` only add samples and may change between runs.

    Raises:
        ValueError: a bad argument (naming it and the allowed values), an unusable morphable model file
            (naming it and what is wrong), or a cache made with other options.
    """
    subjects = check_int("subjects", subjects, 1)
    levels = list(levels)
    bad = [lv for lv in levels if lv not in INTENSITY_LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {sorted(INTENSITY_LEVELS)}, got {levels}")
    settings = check_preprocess_options(size, {})
    n_points = check_int("n_points", n_points, *N_POINTS_RANGE)
    texture_size = check_int("texture_size", texture_size, *TEXTURE_SIZE_RANGE)
    seed = check_int("seed", seed, 0)
    try:
        pose = math.nan if isinstance(pose_degrees, bool) else float(pose_degrees)
    except (TypeError, ValueError):
        pose = math.nan
    if not 0.0 <= pose <= 90.0:
        raise ValueError(f"pose_degrees must be a number from 0 to 90, got {pose_degrees!r}")
    model_digest = None
    if morphable_model is not None:
        check_morphable_model(morphable_model, EXPRESSION_NAMES, IDENTITY_DIMS)
        model_digest = _file_sha256(Path(morphable_model))[:16]
    out = Path(out_dir)
    record = {"dataset": "synthetic", **settings, "seed": seed, "n_points": n_points, "texture_size": texture_size,
              "pose_degrees": pose, "morphable_model_sha256": model_digest}
    prepare_cache(out, record, info={"written_by": "afnetm synthesize", "morphable_model":
                                     str(morphable_model) if morphable_model is not None else None})
    options = {"seed": seed, "n_points": n_points, "texture_size": texture_size, "pose_degrees": pose,
               "morphable_model": str(morphable_model) if morphable_model is not None else None,
               "identity_dims": IDENTITY_DIMS}
    work = [
        (f"synth{s:03d}_{code}{level:02d}", s, name, level, out, size, previews, options)
        for s in range(subjects) for name, code in zip(EXPRESSION_NAMES, EXPRESSION_CODES, strict=True)
        for level in levels
    ]
    return run_batch(_make_one, work, out, jobs=jobs, description="synthesize", progress=progress, chunksize=6)
