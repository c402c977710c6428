"""`preprocess_scan`: one 3D face scan -> AFNet-M inputs (texture, depth, salient-region masks).

Steps (AFNet-M paper, Sec. 2.1; details from the reference notes):

1. validate the scan; remove outliers, z spikes and small disconnected pieces (`surface.clean_scan`);
2. pose: rigid landmark fit to the frontal template, or the landmark-free fallback
   (`pose.estimate_pose`), nose tip moved to the origin;
3. crop a sphere of ``crop_radius`` mm around the nose tip;
4. colour every sample from the texture (through ``corner_uv``) or the vertex colours; with
   triangles, each face centroid is an extra sample (position and colour interpolated), which
   keeps texture detail at the image resolution;
5. gridfit depth and R, G, B together (one system) on the ``size x size`` pixel grid of a
   ``2 * window`` mm square around the nose;
6. foreground = pixels covered by the projected surface plus the enclosed holes gridfit filled;
7. depth noise removal (median, optional Gaussian), depth normalised over the face range with
   the nose bright and repeated into 3 channels (the paper feeds 3 x 224 x 224 depth images);
8. salient-region masks drawn from the pose-normalised landmarks on the same grid, at image
   resolution and area-resized to 56 x 56 and 28 x 28.
"""
from __future__ import annotations

import inspect
import math
import time
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from .._validate import check_int
from .errors import ScanFormatError
from .gridfit import GridfitProblem, ImageGrid, Interp, Regularizer, Solver
from .masks import MaskConfig, salient_masks
from .pose import crop_mask, estimate_pose, transform_scan
from .scan import FaceScan
from .surface import clean_scan, denoise_depth, fill_holes, subset_scan, support_mask

__all__ = [
    "FALLBACK_LANDMARKS", "MAX_SIZE", "MIN_SIZE", "PreprocessedSample", "check_preprocess_options", "preprocess_scan",
    "sample_colors",
]

#: The image sizes a batch job accepts (``--size``); AFNet-M uses 224.
MIN_SIZE, MAX_SIZE = 8, 2048

#: Generic landmark positions (Bosphorus labels, mm, nose tip at the origin, symmetrised Surrey
#: Face Model mean) used for the masks of scans without landmarks.
FALLBACK_LANDMARKS: dict[str, np.ndarray] = {
    k: np.array(v, dtype=np.float64)
    for k, v in {
        "outer left eyebrow": (-56.7, 48.6, -46.0),
        "middle left eyebrow": (-37.4, 57.6, -25.8),
        "inner left eyebrow": (-11.8, 52.8, -19.3),
        "inner right eyebrow": (11.8, 52.8, -19.3),
        "middle right eyebrow": (37.4, 57.6, -25.8),
        "outer right eyebrow": (56.7, 48.6, -46.0),
        "outer left eye corner": (-46.2, 36.6, -39.4),
        "inner left eye corner": (-19.1, 33.6, -33.4),
        "inner right eye corner": (19.1, 33.6, -33.4),
        "outer right eye corner": (46.2, 36.6, -39.4),
        "nose saddle left": (-8.0, 38.0, -24.0),
        "nose saddle right": (8.0, 38.0, -24.0),
        "left nose peak": (-12.2, -11.6, -21.4),
        "nose tip": (0.0, 0.0, 0.0),
        "right nose peak": (12.2, -11.6, -21.4),
        "left mouth corner": (-23.7, -33.7, -31.8),
        "upper lip outer middle": (0.0, -26.3, -16.2),
        "right mouth corner": (23.7, -33.7, -31.8),
        "upper lip inner middle": (0.0, -32.0, -19.0),
        "lower lip inner middle": (0.0, -36.0, -19.5),
        "lower lip outer middle": (0.0, -42.7, -20.5),
    }.items()
}


@dataclass
class PreprocessedSample:
    """AFNet-M inputs for one scan (all images share one grid: row 0 = top, column 0 = left).

    Attributes:
        texture: (H, W, 3) uint8 RGB, 0 on the background.
        depth: (H, W, 3) depth image, the same grey value in the 3 channels; uint8 (default) or
            float32 in [0, 1]. Face depth normalised over the face range (nose = brightest,
            ``depth_floor`` at the low end of the face), background 0.
        mask: (H, W) float32 in [0, 1], salient regions (eyebrows, eyes, nose, mouth).
        mask_56, mask_28: area-resized masks (AFNet-M Mask-1 and Mask-2).
        foreground: (H, W) bool face pixels (surface + filled holes).
        depth_mm: (H, W) float32 z in mm in the pose-normalised frame (nose tip 0), NaN outside
            the face.
        landmarks_px: landmark name -> (column, row) in pixel units.
        grid: the `ImageGrid` (mm <-> pixels).
        info: what was done (surface cleaning counts, pose, crop, gridfit, holes, depth range,
            masks, timings in ms); plain Python types, JSON-serialisable.
    """

    texture: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    mask_56: np.ndarray
    mask_28: np.ndarray
    foreground: np.ndarray
    depth_mm: np.ndarray
    landmarks_px: dict[str, np.ndarray]
    grid: ImageGrid
    info: dict[str, Any] = field(default_factory=dict)


def _bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at (M, 2) uv (origin top-left, v down, [0, 1]) -> (M, 3) float."""
    h, w = texture.shape[:2]
    mx = (uv[:, 0] * w - 0.5).astype(np.float32).reshape(-1, 1)
    my = (uv[:, 1] * h - 0.5).astype(np.float32).reshape(-1, 1)
    out = np.empty((len(uv), 3), dtype=np.float64)
    chunk = 30000  # cv2.remap maps are limited to SHRT_MAX columns
    for a in range(0, len(uv), chunk):
        res = cv2.remap(texture, mx[a : a + chunk], my[a : a + chunk], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[a : a + chunk] = res.reshape(-1, 3)
    return out


def _mean3(a: np.ndarray) -> np.ndarray:
    """``a.mean(axis=1)`` for an (F, 3, ...) array, same bits, without the slow short-axis reduction."""
    return (a[:, 0] + a[:, 1] + a[:, 2]) / 3


def sample_colors(scan: FaceScan, face_centroids: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions and RGB colours for gridfit.

    Vertices get the mean texture colour over the triangle corners that use them (texture seams
    are averaged), or their vertex colour, or grey (128) when the scan has no colour. With
    ``face_centroids`` (and triangles), each triangle adds its centroid, coloured at the centroid
    of its corner uv (or with the mean of its vertex colours).

    Returns:
        (points (M, 3) mm, colors (M, 3) float in 0..255).
    """
    v = np.asarray(scan.vertices, dtype=np.float64)
    faces = np.asarray(scan.faces, dtype=np.int64).reshape(-1, 3)
    n = len(v)
    if scan.texture is not None and scan.corner_uv is not None and len(faces):
        tex = np.asarray(scan.texture)
        cuv = np.asarray(scan.corner_uv, dtype=np.float64).reshape(-1, 3, 2)
        corner_col = _bilinear(tex, cuv.reshape(-1, 2)).reshape(-1, 3, 3)
        corners = faces.T.ravel()  # corner 0 of every face, then corner 1, then corner 2
        per_corner = corner_col.transpose(1, 0, 2).reshape(-1, 3)
        acc = np.stack([np.bincount(corners, per_corner[:, c], minlength=n) for c in range(3)], axis=1)
        cnt = np.bincount(corners, minlength=n).astype(np.float64)
        col = np.where(cnt[:, None] > 0, acc / np.maximum(cnt, 1)[:, None], np.nan)
        if np.isnan(col).any():
            col[np.isnan(col[:, 0])] = np.nanmean(corner_col.reshape(-1, 3), axis=0)
        cent_col = _bilinear(tex, _mean3(cuv)) if face_centroids else None
    elif scan.vertex_colors is not None:
        col = np.asarray(scan.vertex_colors, dtype=np.float64)
        cent_col = _mean3(col[faces]) if face_centroids and len(faces) else None
    else:
        col = np.full((n, 3), 128.0)
        cent_col = np.full((len(faces), 3), 128.0) if face_centroids and len(faces) else None
    if face_centroids and len(faces) and cent_col is not None:
        return np.concatenate([v, _mean3(v[faces])]), np.concatenate([col, cent_col])
    return v, col


def preprocess_scan(
    scan: FaceScan,
    size: int = 224,
    crop_radius: float = 90.0,
    *,
    window: float = 75.0,
    smoothness: float = 1.0,
    interp: Interp = "triangle",
    regularizer: Regularizer = "gradient",
    solver: Solver = "fast",
    clean: bool = True,
    outlier_sigma: float = 3.0,
    spike_max_dz: float = 2.0,
    component_min_fraction: float = 0.05,
    use_landmarks: bool = True,
    require_landmarks: bool = False,
    face_centroids: bool = True,
    max_hole_fraction: float = 0.05,
    median_size: int = 3,
    gaussian_sigma: float = 0.0,
    depth_low_percentile: float = 1.0,
    depth_floor: float = 0.0,
    depth_dtype: Literal["uint8", "float32"] = "uint8",
    mask_config: MaskConfig | None = None,
    min_points: int = 200,
) -> PreprocessedSample:
    """Turn a `FaceScan` into aligned texture, depth and salient-region masks.

    Args:
        scan: the scan (mm, face towards +z).
        size: output side in pixels (224 for AFNet-M).
        crop_radius: radius of the crop sphere around the nose tip (mm).
        window: half-width of the square image window around the nose tip (mm).
        smoothness, interp, regularizer, solver: gridfit settings (see `gridfit.gridfit`).
        clean, outlier_sigma, spike_max_dz, component_min_fraction: surface cleaning
            (`surface.clean_scan`); ``clean=False`` skips it.
        use_landmarks, require_landmarks: pose from landmarks (else the landmark-free fallback);
            ``require_landmarks`` makes a scan without usable landmarks an error.
        face_centroids: add triangle centroids as samples (see `sample_colors`).
        max_hole_fraction: enclosed holes larger than this fraction of the image stay background.
        median_size, gaussian_sigma: depth noise removal (`surface.denoise_depth`).
        depth_low_percentile: face depth percentile mapped to ``depth_floor`` (robust minimum).
        depth_floor: grey level (0..1) of the deepest face pixels; the nose tip maps to 1.
        depth_dtype: 'uint8' (0..255) or 'float32' (0..1) depth output.
        mask_config: `masks.MaskConfig` (default: hull, 8 % IOD margin, binary).
        min_points: fewest points left after cleaning and cropping.

    Raises:
        ScanFormatError: invalid scan (NaN, bad shapes), too few points, or no usable landmarks
            when ``require_landmarks``.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round((now - since) * 1e3, 2)
        return now

    where = scan.source
    scan.validate()
    n_input = len(scan.vertices)
    if n_input < min_points:
        raise ScanFormatError(where, f"the scan has {n_input} points; preprocessing needs at least {min_points}")
    grid = ImageGrid(int(size), float(window))
    cfg = mask_config or MaskConfig()
    info: dict[str, Any] = {"n_points_input": n_input, "landmark_scheme": scan.landmark_scheme}

    # 1. surface cleaning
    t = time.perf_counter()
    if clean:
        cleaned, report = clean_scan(
            scan, outlier_sigma=outlier_sigma, spike_max_dz=spike_max_dz, component_min_fraction=component_min_fraction
        )
        info["surface"] = report.as_dict()
    else:
        cleaned = scan
        info["surface"] = {"skipped": True, "total_removed": 0}
    if len(cleaned.vertices) < min_points:
        raise ScanFormatError(where, f"only {len(cleaned.vertices)} points survive outlier removal (need {min_points})")
    t = tick("clean", t)

    # 2. pose
    pose = estimate_pose(cleaned, use_landmarks=use_landmarks, require_landmarks=require_landmarks)
    aligned = transform_scan(cleaned, pose.transform)
    info["pose"] = {
        "method": pose.method,
        "rotation": pose.transform.rotation.tolist(),
        "translation_mm": pose.transform.translation.tolist(),
        "rotation_deg": round(pose.transform.angle_deg, 3),
        "landmarks_used": list(pose.landmarks_used),
        "rms_mm": None if not np.isfinite(pose.rms_mm) else round(pose.rms_mm, 4),
        "nose_tip_scan_frame_mm": pose.nose_tip.tolist(),
    }
    t = tick("pose", t)

    # 3. crop
    keep = crop_mask(aligned.vertices, None, crop_radius)
    cropped = subset_scan(aligned, keep)
    info["crop"] = {
        "radius_mm": float(crop_radius),
        "center": "nose tip (origin of the pose-normalised frame)",
        "points_kept": int(keep.sum()),
        "points_removed": int((~keep).sum()),
    }
    if keep.sum() < min_points:
        raise ScanFormatError(where, f"only {int(keep.sum())} points lie within {crop_radius} mm of the nose tip (need {min_points})")
    t = tick("crop", t)

    # 4. samples and colours
    pts, cols = sample_colors(cropped, face_centroids=face_centroids)
    t = tick("sample_colors", t)

    # 5. gridfit depth + RGB in one system
    values = np.column_stack([pts[:, 2], cols])
    problem = GridfitProblem(
        pts[:, 0], pts[:, 1], grid.xnodes, grid.ynodes, smoothness=smoothness, interp=interp, regularizer=regularizer
    )
    fitted = grid.to_image(problem.solve(values, solver))  # (4, H, W), row 0 = top
    info["gridfit"] = {
        "samples": int(len(pts)),
        "samples_in_window": int(problem.keep.sum()),
        "grid": [grid.size, grid.size],
        "window_mm": float(window),
        "step_mm": grid.step,
        "smoothness": float(smoothness),
        "interp": interp,
        "regularizer": regularizer,
        "solver": solver,
        "iterations": getattr(problem, "iterations", None),
        "lambda": problem.lam,
    }
    t = tick("gridfit", t)

    # 6. foreground and holes
    px = grid.to_pixels(cropped.vertices)
    faces = np.asarray(cropped.faces)
    support = support_mask(px, (grid.size, grid.size), faces if faces.size else None)
    foreground, n_holes, n_filled = fill_holes(support, int(max_hole_fraction * grid.size * grid.size))
    if not foreground.any():
        raise ScanFormatError(where, "no part of the face falls inside the image window")
    info["holes"] = {
        "holes_filled": n_holes,
        "pixels_filled": n_filled,
        "support_pixels": int(support.sum()),
        "foreground_pixels": int(foreground.sum()),
    }
    t = tick("holes", t)

    # 7. depth noise removal and normalisation
    z = denoise_depth(fitted[0], median_size, gaussian_sigma)
    zf = z[foreground]
    z_hi = float(zf.max())
    z_lo = float(np.percentile(zf, depth_low_percentile))
    if not z_hi > z_lo:
        z_lo = z_hi - 1.0
    norm = np.clip((z - z_lo) / (z_hi - z_lo), 0.0, 1.0)
    grey = np.where(foreground, depth_floor + (1.0 - depth_floor) * norm, 0.0).astype(np.float32)
    if depth_dtype == "uint8":
        depth = np.repeat(np.round(grey * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    elif depth_dtype == "float32":
        depth = np.repeat(grey[..., None], 3, axis=2)
    else:
        raise ValueError(f"depth_dtype must be 'uint8' or 'float32', got {depth_dtype!r}")
    depth_mm = np.where(foreground, z, np.nan).astype(np.float32)
    texture = np.where(foreground[..., None], np.clip(np.round(fitted[1:4].transpose(1, 2, 0)), 0, 255), 0).astype(np.uint8)
    info["noise"] = {"median_size": int(median_size), "gaussian_sigma": float(gaussian_sigma)}
    info["depth"] = {
        "z_min_mm": z_lo,
        "z_max_mm": z_hi,
        "low_percentile": float(depth_low_percentile),
        "floor": float(depth_floor),
        "dtype": depth_dtype,
    }
    t = tick("depth", t)

    # 8. masks
    scheme = cropped.landmark_scheme
    lms = cropped.landmarks
    mask_source = "landmarks"
    try:
        masks = salient_masks(lms, scheme, grid, cfg) if lms else None
    except ValueError:
        masks = None
    if masks is None or not any(masks.parts_drawn.values()):
        masks = salient_masks(FALLBACK_LANDMARKS, "bosphorus", grid, cfg)
        mask_source = "template"
    info["masks"] = {
        "source": mask_source,
        "scheme": scheme if mask_source == "landmarks" else "bosphorus",
        "parts": masks.parts_drawn,
        "iod_px": round(masks.iod_px, 3),
        "shape": cfg.shape,
        "margin_iod": cfg.margin,
        "soft": cfg.soft,
        "coverage": round(float(masks.mask.mean()), 4),
    }
    tick("masks", t)
    timings["total"] = round((time.perf_counter() - t0) * 1e3, 2)
    info["timings_ms"] = timings
    return PreprocessedSample(
        texture=texture,
        depth=depth,
        mask=masks.mask,
        mask_56=masks.scaled.get(56, cv2.resize(masks.mask, (56, 56), interpolation=cv2.INTER_AREA)),
        mask_28=masks.scaled.get(28, cv2.resize(masks.mask, (28, 28), interpolation=cv2.INTER_AREA)),
        foreground=foreground,
        depth_mm=depth_mm,
        landmarks_px={k: grid.to_pixels(np.asarray(v)[:2]) for k, v in lms.items()},
        grid=grid,
        info=info,
    )


_POSITIVE_OPTIONS = ("crop_radius", "window", "outlier_sigma", "spike_max_dz")
_NON_NEGATIVE_OPTIONS = ("smoothness", "gaussian_sigma", "component_min_fraction", "max_hole_fraction")


def check_preprocess_options(size: Any, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the options of a batch job once, before any work: ``size`` and `preprocess_scan` keyword options.

    Returns every `preprocess_scan` setting the job will use (``size``, then the given options over the
    defaults; ``mask_config`` as a plain dict), JSON-serialisable, e.g. to record in a cache.

    Raises:
        ValueError: naming the option and the allowed values: an unknown option, ``size`` not an integer in
            [`MIN_SIZE`, `MAX_SIZE`], ``crop_radius``/``window`` not a finite positive number, a choice
            option (``interp``, ``solver``, ...) not one of its values.
    """
    options = dict(options or {})
    params = inspect.signature(preprocess_scan).parameters
    known = [name for name in params if name not in ("scan", "size")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown preprocessing option(s) {unknown}; known: {known}")
    size = check_int("size", size, MIN_SIZE, MAX_SIZE)
    hints = typing.get_type_hints(preprocess_scan)
    effective: dict[str, Any] = {"size": size}
    for name in known:
        value = options.get(name, params[name].default)
        choices = typing.get_args(hints.get(name)) if typing.get_origin(hints.get(name)) is Literal else ()
        if choices and value not in choices:
            raise ValueError(f"preprocessing option {name} must be one of {list(choices)}, got {value!r}")
        if name in _POSITIVE_OPTIONS or name in _NON_NEGATIVE_OPTIONS:
            positive = name in _POSITIVE_OPTIONS
            try:
                number = math.nan if isinstance(value, bool) else float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number) or number < 0 or (positive and number == 0):
                unit = " (mm)" if name in ("crop_radius", "window") else ""
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}{unit}, got {value!r}")
            value = number
        if name == "mask_config":
            if value is not None and not isinstance(value, MaskConfig):
                raise ValueError(f"mask_config must be a MaskConfig, got {type(value).__name__}")
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value or MaskConfig()).items()}
        effective[name] = value
    return effective
