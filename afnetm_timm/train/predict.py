"""Class probabilities of a (trained) AFNet-M model for one face: from a 3D scan file, or from images.

Two kinds of input:

* a scan file (``.wrl``, ``.bnt``, ``.obj``, ``.ply``, ...): read with `afnetm_timm.data.read_scan`
  and preprocessed with `afnetm_timm.data.preprocess_scan` (pose normalisation, gridfit texture and
  depth, salient-region mask), as in training;
* already aligned images: a texture (any image OpenCV reads; used as RGB), a depth image (8- or
  16-bit grey, or 3-channel) and optionally a salient-region mask image. They must share one size
  and are resized (area interpolation, like the evaluation transform) to ``size``×``size``.
  **Without a mask image the mask is all ones**: mask attention then treats every pixel as
  salient. The model was trained with salient-region masks, so such predictions can differ from
  those made with the real mask; `ImageSample.mask_source` records which mask was used.

The model comes from `load_model`: an afnetm-timm checkpoint (``.safetensors`` written by
`afnetm_timm.hub.save_checkpoint`), or a timm name (``afnet_m``, ``local-dir:DIR``, ``hf-hub:ORG/NAME``).
`predict` normalises the sample with the model's ``pretrained_cfg`` mean/std and returns
``{label: probability}``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from ..packing import EXPRESSION_NAMES

if TYPE_CHECKING:
    from ..data.pipeline import PreprocessedSample

__all__ = [
    "ALL_ONES_MASK",
    "ImageSample",
    "label_names",
    "load_model",
    "model_input",
    "predict",
    "sample_from_images",
    "sample_from_scan",
]

#: `ImageSample.mask_source` when no mask image was given.
ALL_ONES_MASK = "all-ones (no mask image given: mask attention sees every pixel as salient)"

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".pth.tar", ".tar")
_PRETRAINED_PREFIXES = ("local-dir:", "hf-hub:")


class SampleLike(Protocol):
    """Anything with AFNet-M's three input images (`PreprocessedSample`, `ImageSample`)."""

    texture: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


@dataclass
class ImageSample:
    """A sample read from image files.

    Attributes:
        texture: (size, size, 3) uint8 RGB.
        depth: (size, size, 3) uint8 (from an 8-bit image) or float32 in [0, 1] (from a 16-bit or
            floating-point image), the same grey value in the 3 channels for a grey depth image.
        mask: (size, size) float32 in [0, 1].
        mask_source: the mask image's path, or `ALL_ONES_MASK`.
        sources: 'texture', 'depth' (and 'mask') → the file read.
    """

    texture: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    mask_source: str = ALL_ONES_MASK
    sources: dict[str, str] = field(default_factory=dict)


# --- the model ----------------------------------------------------------------------------------


def _is_afnet_m(model: nn.Module) -> bool:
    from ..models.afnet_m import AFNetM

    return isinstance(model, AFNetM)


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """An AFNet-M model in eval mode on ``device``, from a checkpoint file or a timm model name.

    Args:
        spec: one of
            * a ``.safetensors`` checkpoint written by `afnetm_timm.hub.save_checkpoint` (architecture,
              arguments and label names are read from it);
            * ``local-dir:DIR`` or ``hf-hub:ORG/NAME`` (an ``afnetm hub export`` folder or Hub repo):
              ``timm.create_model(spec, pretrained=True)``;
            * a registered name: ``afnet_m`` (untrained, random weights) or a tagged one such as
              ``afnet_m.bu3dfe`` (``pretrained=True``: its published weights).
        device: where the model goes.

    Raises:
        FileNotFoundError: a file-like ``spec`` (a path, a ``.safetensors`` name) that does not exist.
        ValueError: a pickle weight file (``.pt``, ``.pth``, ``.bin``, ...), a name that is neither a
            file nor a registered model, or a model that is not AFNet-M.
        RuntimeError: (`afnetm_timm.hub.errors.HubWeightsError`) a corrupt or foreign safetensors file,
            weights that are not available offline.
    """
    import timm

    import afnetm_timm  # noqa: F401  (registers the AFNet-M models with timm)

    from ..hub.checkpoint import load_checkpoint

    text = os.fspath(spec)
    if text.startswith(_PRETRAINED_PREFIXES):
        model = timm.create_model(text, pretrained=True)
    else:
        path = Path(text).expanduser()
        lower = path.name.lower()
        file_like = (path.is_file() or lower.endswith((".safetensors", *_PICKLE_SUFFIXES)) or os.sep in text
                     or (os.altsep is not None and os.altsep in text))
        if file_like:
            if not path.is_file():
                raise FileNotFoundError(f"model checkpoint {path} does not exist (or is not a file)")
            if lower.endswith(_PICKLE_SUFFIXES):
                raise ValueError(
                    f"model checkpoint {path} is a pickle / torch.save file ({path.suffix}): afnetm loads only "
                    "safetensors checkpoints written by afnetm_timm.hub.save_checkpoint (pickle files can run code)"
                )
            model = load_checkpoint(path).create_model()
        elif timm.is_model(text):
            model = timm.create_model(text, pretrained="." in text)  # a tag names published weights
        else:
            raise ValueError(
                f"model {text!r} is neither a checkpoint file (*.safetensors), a registered model name "
                f"({', '.join(timm.list_models('afnet_m*')[:4])}, ...), nor a local-dir:/hf-hub: name"
            )
    if not _is_afnet_m(model):
        raise ValueError(f"model {text!r} is a {type(model).__name__}, not an AFNet-M model (afnet_m*)")
    from .trainer import resolve_device

    return model.to(resolve_device(device)).eval()


def label_names(model: nn.Module) -> list[str]:
    """Class names in classifier order: ``pretrained_cfg['label_names']`` when their count fits, else
    `EXPRESSION_NAMES` for 6 classes, else ``class_0``, ``class_1``, ..."""
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    if num_classes == len(EXPRESSION_NAMES):
        return list(EXPRESSION_NAMES)
    return [f"class_{i}" for i in range(num_classes)]


# --- samples ------------------------------------------------------------------------------------


def _check_size(size: int) -> int:
    if isinstance(size, bool) or int(size) != size or size < 32 or size % 32:
        raise ValueError(f"size must be a positive multiple of 32 (AFNet-M's input), got {size}")
    return int(size)


def sample_from_scan(path: str | os.PathLike, size: int = 224, **options: Any) -> PreprocessedSample:
    """Read and preprocess a 3D scan file into a `PreprocessedSample` of ``size``×``size`` images.

    ``options`` go to `afnetm_timm.data.preprocess_scan` (e.g. ``crop_radius``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: (`ScanFormatError`) an unsupported or unreadable scan, naming the file; a scan the
            preprocessing cannot handle (the message names the file).
    """
    from ..data import ScanFormatError, preprocess_scan, read_scan

    size = _check_size(size)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scan {path} does not exist (or is not a file)")
    scan = read_scan(path)
    try:
        return preprocess_scan(scan, size=size, **options)
    except ScanFormatError:
        raise
    except ValueError as err:
        raise ValueError(f"scan {path}: preprocessing failed: {err}") from err


def _read_image(path: Path, what: str, flags: int) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"{what} image {path} does not exist (or is not a file)")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ValueError(f"{what} image {path} cannot be read as an image (corrupt or unsupported format)")
    return image


def _to_grey(image: np.ndarray, what: str, path: Path) -> np.ndarray:
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise ValueError(f"{what} image {path} has an unsupported shape {image.shape}")
    return image


def _unit_float(image: np.ndarray, what: str, path: Path) -> np.ndarray:
    """uint8 / uint16 / float image → float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
        if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
            raise ValueError(f"{what} image {path}: floating-point values must lie in [0, 1]")
        return image
    raise ValueError(f"{what} image {path}: unsupported pixel type {image.dtype} (use 8- or 16-bit images)")


def _read_texture(path: Path) -> np.ndarray:
    import cv2

    image = _read_image(path, "texture", cv2.IMREAD_COLOR)  # 8-bit BGR (grey and 16-bit converted)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_depth(path: Path) -> np.ndarray:
    """(H, W, 3): uint8 for 8-bit images, float32 in [0, 1] for 16-bit or floating-point ones."""
    import cv2

    image = _read_image(path, "depth", cv2.IMREAD_UNCHANGED)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[..., ::-1]  # BGR → RGB
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"depth image {path} has an unsupported shape {image.shape}")
    image = np.ascontiguousarray(image)
    return image if image.dtype == np.uint8 else _unit_float(image, "depth", path)


def _read_mask(path: Path) -> np.ndarray:
    """(H, W) float32 in [0, 1]; an 8-bit image holding only 0 and 1 counts as a {0, 1} mask."""
    import cv2

    image = _to_grey(_read_image(path, "mask", cv2.IMREAD_UNCHANGED), "mask", path)
    if image.dtype == np.uint8 and image.max() <= 1:
        return image.astype(np.float32)
    return _unit_float(image, "mask", path)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (size, size):
        return image
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if image.ndim == 3 and resized.ndim == 2:
        resized = resized[..., None]
    return resized


def sample_from_images(
    texture_path: str | os.PathLike,
    depth_path: str | os.PathLike,
    mask_path: str | os.PathLike | None = None,
    size: int = 224,
) -> ImageSample:
    """Read aligned texture, depth and (optional) mask images into an `ImageSample` of ``size``×``size``.

    Args:
        texture_path: colour image (read by OpenCV as BGR and converted to RGB; grey images become grey RGB).
        depth_path: depth image: 8-bit or 16-bit grey, or 3-channel (kept per channel, RGB order).
        mask_path: salient-region mask: grey (or colour, converted to grey) 8-bit, 16-bit or float in
            [0, 1]; an 8-bit image holding only 0 and 1 is a {0, 1} mask. None: an all-ones mask
            (`ALL_ONES_MASK`).
        size: output side, a multiple of 32. Images of another size are resized (area interpolation).

    Raises:
        FileNotFoundError: a missing file (named).
        ValueError: an unreadable image, unsupported pixel values, or images of different sizes (named).
    """
    size = _check_size(size)
    paths = {"texture": Path(texture_path), "depth": Path(depth_path)}
    if mask_path is not None:
        paths["mask"] = Path(mask_path)
    images = {"texture": _read_texture(paths["texture"]), "depth": _read_depth(paths["depth"])}
    if "mask" in paths:
        images["mask"] = _read_mask(paths["mask"])
    shapes = {name: image.shape[:2] for name, image in images.items()}
    if len(set(shapes.values())) != 1:
        listing = ", ".join(f"{name} {paths[name]} is {h}x{w}" for name, (h, w) in shapes.items())
        raise ValueError(f"the input images must have the same size (height x width): {listing}")
    h, w = shapes["texture"]
    mask = images.get("mask", np.ones((h, w), dtype=np.float32))
    return ImageSample(
        texture=_resize(images["texture"], size),
        depth=_resize(images["depth"], size),
        mask=np.clip(_resize(mask, size), 0.0, 1.0).astype(np.float32),
        mask_source=str(paths["mask"]) if "mask" in paths else ALL_ONES_MASK,
        sources={name: str(p) for name, p in paths.items()},
    )


# --- prediction ---------------------------------------------------------------------------------


def model_input(sample: SampleLike, cfg: Mapping[str, Any]) -> torch.Tensor:
    """The sample as a normalised packed (1, 7, H, W) float32 batch for a model with pretrained_cfg ``cfg``.

    No resizing: the sample's images are used at their size (which must be a multiple of 32 for the model).
    """
    from ..data.transforms import PackToTensor

    return PackToTensor.from_config(cfg)(image=sample.texture, depth=sample.depth, mask=sample.mask).unsqueeze(0)


def predict(model: nn.Module, sample: SampleLike) -> dict[str, float]:
    """Class probabilities (softmax) of ``model`` for one sample, as ``{label: probability}`` in class order.

    Args:
        model: an AFNet-M classifier; it runs in eval mode (every module's mode is restored afterwards).
        sample: texture (H, W, 3) uint8 RGB, depth (H, W[, 1|3]) uint8 or float in [0, 1], mask (H, W)
            in [0, 1] (a `PreprocessedSample` or `ImageSample`), normalised with ``model.pretrained_cfg``.

    Raises:
        ValueError: a model without classifier, a sample of the wrong shape or size.
    """
    labels = label_names(model)
    if not labels:
        raise ValueError("predict: the model has no classifier (num_classes=0)")
    x = model_input(sample, model.pretrained_cfg)
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            probs = model(x.to(device=device, dtype=dtype)).float().softmax(dim=-1)[0].cpu().tolist()
    finally:
        for module, mode in modes.items():
            module.training = mode
    return dict(zip(labels, probs, strict=True))
