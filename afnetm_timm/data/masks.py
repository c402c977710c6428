"""Salient-region masks (eyebrows, eyes, nose, mouth) from facial landmarks.

AFNet-M feeds a mask of the salient facial regions to its mask-attention modules at two scales:
Mask-1 (56 x 56, Layer1) and Mask-2 (28 x 28, Layer2), the ResNet18 stage resolutions for a
224 x 224 input. The mask is drawn once at image resolution, in the same grid as the texture and
depth images (landmarks are projected with the same `ImageGrid`), then area-resized.

Regions per scheme (iBUG 0-based indices; names via `pose.ibug68_name`): iBUG-68 brows 17-26,
eyes 36-47, nose 27-35, lips 48-67; BU-3DFE-83 (1-based) eyes 1-16, brows 17-36, nose 37-48,
mouth 49-68; Bosphorus by label.

Default (reference notes, *literature*): the binary union of the filled convex hull of each
region's landmarks, dilated by 8 % of the inter-ocular distance (IOD, between the eye centres);
eyes given only by their two corners (Bosphorus) become an ellipse through the corners whose
height is half the eye width. Region set, shape ('hull' or 'ellipse'), margin and binary/soft
(Gaussian-blurred) output are configurable.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from .gridfit import ImageGrid
from .pose import bu3dfe83_name, ibug68_name, semantic_landmarks

__all__ = [
    "REGIONS",
    "MaskConfig",
    "MaskSet",
    "downsample_mask",
    "draw_region_mask",
    "region_parts",
    "salient_masks",
]

#: All region names, in drawing order.
REGIONS: tuple[str, ...] = ("eyebrows", "eyes", "nose", "mouth")


def _ibug(a: int, b: int) -> list[str]:
    """Names of the iBUG points with 0-based indices a..b."""
    return [ibug68_name(i) for i in range(a, b + 1)]


def _bu(a: int, b: int) -> list[str]:
    """Names of the BU-3DFE points with 1-based numbers a..b."""
    return [bu3dfe83_name(i) for i in range(a, b + 1)]


# region -> parts -> landmark names (each part is drawn as one shape)
_PARTS: dict[str, dict[str, list[list[str]]]] = {
    "ibug68": {
        "eyebrows": [_ibug(17, 21), _ibug(22, 26)],
        "eyes": [_ibug(36, 41), _ibug(42, 47)],
        "nose": [_ibug(27, 35)],
        "mouth": [_ibug(48, 59) + _ibug(60, 67)],
    },
    "bu3dfe83": {
        "eyebrows": [_bu(17, 26), _bu(27, 36)],
        "eyes": [_bu(1, 8), _bu(9, 16)],
        "nose": [_bu(37, 48)],
        "mouth": [_bu(49, 68)],
    },
    "bosphorus": {
        "eyebrows": [
            ["outer left eyebrow", "middle left eyebrow", "inner left eyebrow"],
            ["inner right eyebrow", "middle right eyebrow", "outer right eyebrow"],
        ],
        "eyes": [["outer left eye corner", "inner left eye corner"], ["inner right eye corner", "outer right eye corner"]],
        "nose": [["nose saddle left", "nose saddle right", "left nose peak", "nose tip", "right nose peak"]],
        "mouth": [
            [
                "left mouth corner",
                "upper lip outer middle",
                "right mouth corner",
                "lower lip outer middle",
                "upper lip inner middle",
                "lower lip inner middle",
            ]
        ],
    },
}

#: Inter-ocular distance assumed when the eyes are not annotated (mm, eye centre to eye centre).
DEFAULT_IOD_MM = 64.0


@dataclass(frozen=True)
class MaskConfig:
    """How masks are drawn.

    Attributes:
        regions: subset of `REGIONS`.
        shape: 'hull' (filled convex hull of each part; parts with two points become ellipses)
            or 'ellipse' (an ellipse fitted to each part's points).
        margin: dilation, as a fraction of the inter-ocular distance.
        eye_height_ratio: height / width of a two-point (corner-only) eye ellipse.
        soft: Gaussian-blur the binary mask (sigma = ``soft_sigma`` x IOD), rescaled to max 1.
        soft_sigma: see ``soft``.
        scales: the area-resized outputs (AFNet-M: 56 and 28).
    """

    regions: tuple[str, ...] = REGIONS
    shape: Literal["hull", "ellipse"] = "hull"
    margin: float = 0.08
    eye_height_ratio: float = 0.5
    soft: bool = False
    soft_sigma: float = 0.05
    scales: tuple[int, ...] = (56, 28)

    def __post_init__(self) -> None:
        bad = [r for r in self.regions if r not in REGIONS]
        if bad:
            raise ValueError(f"unknown mask regions {bad}; choose from {REGIONS}")
        if self.shape not in ("hull", "ellipse"):
            raise ValueError(f"mask shape must be 'hull' or 'ellipse', got {self.shape!r}")
        if self.margin < 0 or self.soft_sigma < 0 or self.eye_height_ratio <= 0:
            raise ValueError("margin and soft_sigma must be >= 0 and eye_height_ratio > 0")


@dataclass
class MaskSet:
    """Masks of one image: ``mask`` (H, W) float32 in [0, 1] and one entry per scale."""

    mask: np.ndarray
    scaled: dict[int, np.ndarray] = field(default_factory=dict)
    parts_drawn: dict[str, int] = field(default_factory=dict)
    iod_px: float = float("nan")


def region_parts(
    landmarks: Mapping[str, np.ndarray], scheme: str, regions: Sequence[str] = REGIONS
) -> dict[str, list[np.ndarray]]:
    """Landmark point sets of each region part present in ``landmarks``.

    Missing landmarks are skipped; a part needs at least two of its points.
    Returns region -> list of (K, D) arrays (D = the landmarks' dimension).
    """
    table = _PARTS.get(scheme)
    if table is None:
        raise ValueError(f"no salient-region table for landmark scheme {scheme!r}; use ibug68, bu3dfe83 or bosphorus")
    lower = {" ".join(k.lower().replace("_", " ").split()): np.asarray(v, dtype=np.float64) for k, v in landmarks.items()}
    out: dict[str, list[np.ndarray]] = {}
    for region in regions:
        parts = []
        for names in table[region]:
            pts = [lower[n.replace("_", " ")] for n in names if n.replace("_", " ") in lower]
            if len(pts) >= 2:
                parts.append(np.array(pts))
        out[region] = parts
    return out


def _ellipse_params(pts: np.ndarray, min_ratio: float) -> tuple[np.ndarray, float, float, float]:
    """Centre, semi-major, semi-minor (pixels) and angle (degrees) enclosing 2-D points."""
    c = pts.mean(axis=0)
    d = pts - c
    if len(pts) == 2:
        v = pts[1] - pts[0]
        a = 0.5 * float(np.linalg.norm(v))
        return c, a, a * min_ratio, float(np.degrees(np.arctan2(v[1], v[0])))
    _, _, vt = np.linalg.svd(d, full_matrices=False)
    proj = d @ vt.T
    a = 0.5 * float(np.ptp(proj[:, 0])) * 1.1
    b = max(0.5 * float(np.ptp(proj[:, 1])) * 1.1, a * min_ratio * 0.5)
    ang = float(np.degrees(np.arctan2(vt[0, 1], vt[0, 0])))
    # Use the centre of the extent, not the mean (robust to uneven point spacing).
    c = c + vt.T @ np.array([0.5 * (proj[:, 0].max() + proj[:, 0].min()), 0.5 * (proj[:, 1].max() + proj[:, 1].min())])
    return c, a, b, ang


_SHIFT = 4  # sub-pixel bits for OpenCV drawing


def draw_region_mask(
    parts: Mapping[str, list[np.ndarray]],
    shape_hw: tuple[int, int],
    iod_px: float,
    config: MaskConfig = MaskConfig(),
) -> np.ndarray:
    """Draw the union of the parts (pixel (column, row) points) into an (H, W) float32 mask."""
    h, w = shape_hw
    margin_px = config.margin * iod_px
    out = np.zeros((h, w), dtype=np.uint8)
    scale = float(1 << _SHIFT)
    for region in config.regions:
        for pts in parts.get(region, []):
            p2 = np.asarray(pts, dtype=np.float64)[:, :2]
            canvas = np.zeros((h, w), dtype=np.uint8)
            if config.shape == "ellipse" or len(p2) < 3:
                ratio = config.eye_height_ratio
                c, a, b, ang = _ellipse_params(p2, ratio)
                axes = (int(round((a + margin_px) * scale)), int(round((b + margin_px) * scale)))
                centre = (int(round(c[0] * scale)), int(round(c[1] * scale)))
                cv2.ellipse(canvas, centre, axes, ang, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
            else:
                hull = cv2.convexHull(np.round(p2 * scale).astype(np.int32))
                cv2.fillConvexPoly(canvas, hull, 1, lineType=cv2.LINE_8, shift=_SHIFT)
                r = int(round(margin_px))
                if r > 0:
                    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
                    canvas = cv2.dilate(canvas, kernel)
            out |= canvas
    mask = out.astype(np.float32)
    if config.soft and config.soft_sigma > 0 and mask.any():
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(config.soft_sigma * iod_px, 0.5), borderType=cv2.BORDER_CONSTANT)
        mask /= max(float(mask.max()), 1e-12)
    return np.clip(mask, 0.0, 1.0)


def downsample_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-resize an (H, W) mask to (size, size) float32 (``cv2.INTER_AREA``: pixel fractions)."""
    m = np.asarray(mask, dtype=np.float32)
    return np.clip(cv2.resize(m, (int(size), int(size)), interpolation=cv2.INTER_AREA), 0.0, 1.0)


def _iod_px(landmarks_px: Mapping[str, np.ndarray], scheme: str, grid: ImageGrid) -> float:
    sem = semantic_landmarks({k: np.r_[np.asarray(v, dtype=np.float64)[:2], 0.0] for k, v in landmarks_px.items()}, scheme)
    if "eye_center_l" in sem and "eye_center_r" in sem:
        return float(np.linalg.norm(sem["eye_center_l"][:2] - sem["eye_center_r"][:2]))
    pairs = [("eye_outer_l", "eye_inner_l"), ("eye_inner_r", "eye_outer_r")]
    if all(a in sem and b in sem for a, b in pairs):
        cl = 0.5 * (sem["eye_outer_l"] + sem["eye_inner_l"])
        cr = 0.5 * (sem["eye_inner_r"] + sem["eye_outer_r"])
        return float(np.linalg.norm(cl[:2] - cr[:2]))
    return DEFAULT_IOD_MM / grid.step


def salient_masks(
    landmarks: Mapping[str, np.ndarray],
    scheme: str,
    grid: ImageGrid,
    config: MaskConfig = MaskConfig(),
) -> MaskSet:
    """Salient-region masks for landmarks given in the image grid's (canonical) frame.

    Args:
        landmarks: name -> (3,) or (2,) position in mm, in the frame of ``grid`` (after pose
            normalisation, like the depth image).
        scheme: 'ibug68', 'bu3dfe83' or 'bosphorus'.
        grid: the image grid of the texture/depth images.
    Returns:
        `MaskSet` with the (size, size) mask and its area-resized versions (``config.scales``).
    """
    px = {k: grid.to_pixels(np.asarray(v, dtype=np.float64)[:2]) for k, v in landmarks.items()}
    parts = region_parts(px, scheme, config.regions)
    iod = _iod_px(px, scheme, grid)
    mask = draw_region_mask(parts, (grid.size, grid.size), iod, config)
    scaled = {s: downsample_mask(mask, s) for s in config.scales}
    return MaskSet(mask=mask, scaled=scaled, parts_drawn={r: len(p) for r, p in parts.items()}, iod_px=iod)

