"""Grad-CAM heat maps of AFNet-M's texture and depth branches (the paper's Fig. 6).

The paper visualises, with Grad-CAM, where each branch looks when it classifies an expression. Here
the target layer of a branch is the last residual block of that branch (``stages[-1].blocks[-1]`` for
the main path, the last stage's ``depth_blocks[-1]`` for the depth path), and the heat maps come from
the `pytorch-grad-cam <https://github.com/jacobgil/pytorch-grad-cam>`_ library (``GradCAM`` with a
``ClassifierOutputTarget``), one Grad-CAM run per branch.

Which branches a variant has:

* two-branch models (``afnet_m``, ``afnet_m_no_ma``, ``afnet_m_no_af``, ``afnet_m_s2``–``s4``,
  deeper backbones): ``'texture'`` and ``'depth'``. After the first conv-level fusion the main
  path carries the fused map, so the "texture" heat map of those models is that of the texture
  path into which depth features were fused (Fig. 1 of the paper);
* ``afnet_m_2d*``: ``'texture'`` only; ``afnet_m_3d*``: ``'depth'`` only;
* ``afnet_m_s1`` (data-level fusion, one trunk on texture and depth stacked): ``'fused'`` only.

`grad_cam` leaves the model as it found it: no hooks, the same train/eval mode of every module, the
same ``requires_grad`` flags and the same ``.grad`` tensors of the parameters.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .._atomic import atomic_path, require_suffix
from ..models.afnet_m import AFNetM
from ..packing import EXPRESSION_CODES, PACKED_CHANNELS

__all__ = ["Explanation", "branch_target_layers", "grad_cam", "save_explanation_png"]

#: Branch names in display order.
BRANCHES: tuple[str, ...] = ("texture", "depth", "fused")


def _last_block(blocks: nn.Module) -> nn.Module:
    """The last residual block of a stage (an ``nn.Sequential`` of blocks), or the stage itself."""
    children = list(blocks.children())
    return children[-1] if isinstance(blocks, nn.Sequential) and children else blocks


def branch_target_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Grad-CAM target layer of each branch the model has: its last residual block.

    Args:
        model: an `AFNetM` (any registered ``afnet_m*`` variant).

    Returns:
        ``{'texture': module, 'depth': module}`` for two-branch models, ``{'texture': ...}`` for the
        2D-only, ``{'depth': ...}`` for the 3D-only variants, ``{'fused': ...}`` for data-level
        fusion (S1: one trunk on texture and depth stacked).

    Raises:
        ValueError: ``model`` is not an AFNet-M model, or has no stages left (pruned).
    """
    if not isinstance(model, AFNetM):
        raise ValueError(
            f"branch_target_layers: expected an AFNet-M model (timm.create_model('afnet_m*')), got {type(model).__name__}"
        )
    if len(model.stages) == 0:
        raise ValueError("branch_target_layers: the model has no stages (pruned by prune_intermediate_layers)")
    if model.fusion_mode == "data":
        main_name = "fused"
    elif model.modalities == "depth":
        main_name = "depth"
    else:
        main_name = "texture"
    layers = {main_name: _last_block(model.stages[-1].blocks)}
    depth_stages = [stage for stage in model.stages if stage.depth_blocks is not None]
    if depth_stages:
        layers["depth"] = _last_block(depth_stages[-1].depth_blocks)
    return layers


@dataclass(frozen=True, eq=False)
class Explanation(Mapping):
    """Grad-CAM result for one input; also a read-only mapping branch name → heat map.

    Attributes:
        heatmaps: branch name (``'texture'``, ``'depth'`` or ``'fused'``) → (H, W) float32 heat map
            in [0, 1] at the input resolution (min-max scaled per map, as pytorch-grad-cam does).
        probabilities: (num_classes,) float32 softmax of the model's logits (eval mode).
        target_class: the class index the heat maps explain.
        predicted_class: ``argmax(probabilities)``.
    """

    heatmaps: dict[str, np.ndarray]
    probabilities: np.ndarray
    target_class: int
    predicted_class: int

    def __getitem__(self, branch: str) -> np.ndarray:
        return self.heatmaps[branch]

    def __iter__(self) -> Iterator[str]:
        return iter(self.heatmaps)

    def __len__(self) -> int:
        return len(self.heatmaps)

    # identity, not Mapping's element-wise comparison (ambiguous for arrays)
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        maps = ", ".join(f"{k}: {v.shape}" for k, v in self.heatmaps.items())
        return (f"Explanation(heatmaps={{{maps}}}, target_class={self.target_class}, "
                f"predicted_class={self.predicted_class}, probabilities={np.round(self.probabilities, 4).tolist()})")


def _single_input(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"grad_cam: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != PACKED_CHANNELS:
        raise ValueError(f"grad_cam: x must be one packed input (7, H, W) or (1, 7, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"grad_cam: x must be a normalised floating-point tensor, got {x.dtype}")
    return x


def grad_cam(model: nn.Module, x: torch.Tensor, target_class: int | None = None) -> Explanation:
    """Grad-CAM heat maps of every branch of an AFNet-M model for one packed input.

    Args:
        model: an `AFNetM` with a classifier (``num_classes > 0``), on any device (CPU works).
        x: one normalised packed input, (7, H, W) or (1, 7, H, W) (normalised with the model's
            ``pretrained_cfg`` mean/std, e.g. by `afnetm_timm.data.transforms.PackToTensor`);
            moved to the model's device.
        target_class: class index to explain; None explains the predicted class.

    Returns:
        `Explanation` with (H, W) float32 heat maps in [0, 1] per branch (see `branch_target_layers`),
        the class probabilities (softmax, eval mode) and the explained class.

    The model runs in eval mode during the call; afterwards every module has its former train/eval
    mode, and no hook, ``requires_grad`` flag or parameter ``.grad`` has changed.

    Raises:
        ValueError: not an AFNet-M model, no classifier, a wrong input shape, a target class out of range.
    """
    layers = branch_target_layers(model)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes <= 0:
        raise ValueError("grad_cam: the model has no classifier (num_classes=0); Grad-CAM explains class scores")
    x = _single_input(x)
    if target_class is not None and not 0 <= int(target_class) < num_classes:
        raise ValueError(f"grad_cam: target_class must lie in [0, {num_classes - 1}], got {target_class}")

    from pytorch_grad_cam import GradCAM  # slow to import (~1-3 s): only when needed
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    x = x.detach().to(device)

    modes = {module: module.training for module in model.modules()}
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    heatmaps: dict[str, np.ndarray] = {}
    try:
        model.eval()
        with torch.no_grad():
            probabilities = model(x).float().softmax(dim=-1)[0].cpu().numpy()
        predicted = int(probabilities.argmax())
        target = predicted if target_class is None else int(target_class)
        # Gradients reach the target layers through the input, not the weights: no weight gradients
        # are computed, and frozen models work too.
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            for name, layer in layers.items():
                cam = GradCAM(model=model, target_layers=[layer])
                try:
                    # not `with cam:`: its __exit__ swallows IndexError
                    result = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])
                finally:
                    cam.activations_and_grads.release()
                heatmaps[name] = np.clip(np.asarray(result[0], dtype=np.float32), 0.0, 1.0)
    finally:
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        for module, mode in modes.items():
            module.training = mode
    return Explanation(heatmaps=heatmaps, probabilities=probabilities.astype(np.float32), target_class=target,
                       predicted_class=predicted)


def _as_display_rgb(name: str, image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 / uint16 / float [0, 1] → (H, W, 3) float32 RGB in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"save_explanation_png: {name} must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating) or image.dtype == np.bool_:
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
    raise ValueError(f"save_explanation_png: {name} must be uint8, uint16 or float in [0, 1], got {image.dtype}")


def save_explanation_png(
    path: str | os.PathLike,
    texture: np.ndarray,
    depth: np.ndarray,
    explanation: Explanation,
    labels: Sequence[str] = EXPRESSION_CODES,
    title: str | None = None,
) -> Path:
    """Write a PNG panel: texture, depth, each branch's heat map over its modality, class probabilities.

    Args:
        path: the PNG to write (folders are created). Written to a temporary file in the same folder
            and renamed, so ``path`` never holds a partial PNG.
        texture: (H, W, 3) RGB, uint8 or float in [0, 1] (e.g. ``sample.texture``).
        depth: (H, W), (H, W, 1) or (H, W, 3) uint8, uint16 or float in [0, 1] (e.g. ``sample.depth``).
        explanation: from `grad_cam`; heat maps of another size are resized to the images.
        labels: class names for the bar chart, one per probability.
        title: figure title (default: the explained and the predicted class).

    Returns:
        ``path`` as a `Path`.
    """
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from pytorch_grad_cam.utils.image import show_cam_on_image

    path = require_suffix(path, ".png", "the Grad-CAM panel")
    probs = np.asarray(explanation.probabilities, dtype=np.float64)
    labels = list(labels)
    if len(labels) != len(probs):
        raise ValueError(f"save_explanation_png: {len(labels)} labels for {len(probs)} class probabilities")
    tex = _as_display_rgb("texture", texture)
    dep = _as_display_rgb("depth", depth)
    if tex.shape != dep.shape:
        raise ValueError(f"save_explanation_png: texture {tex.shape[:2]} and depth {dep.shape[:2]} differ in size")
    height, width = tex.shape[:2]
    panels: list[tuple[np.ndarray, str]] = [(tex, "texture"), (dep, "depth")]
    for branch in (b for b in BRANCHES if b in explanation.heatmaps):
        heat = np.clip(np.asarray(explanation.heatmaps[branch], dtype=np.float32), 0.0, 1.0)
        if heat.shape != (height, width):
            heat = np.clip(cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        base = dep if branch == "depth" else tex
        panels.append((show_cam_on_image(base, heat, use_rgb=True, image_weight=0.5), f"Grad-CAM: {branch}"))

    fig = Figure(figsize=(3.0 * len(panels) + 4.0, 3.4))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, len(panels) + 1, width_ratios=[1.0] * len(panels) + [1.4])
    for idx, (image, name) in enumerate(panels):
        ax = fig.add_subplot(grid[0, idx])
        ax.imshow(image)
        ax.set_title(name)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, len(panels)])
    colors = ["tab:orange" if i == explanation.target_class else "tab:blue" for i in range(len(probs))]
    ax.barh(labels[::-1], probs[::-1], color=colors[::-1])
    ax.set_xlim(0, 1)
    ax.set_title("class probabilities")
    if title is None:
        title = (f"Grad-CAM for class {labels[explanation.target_class]} "
                 f"(predicted {labels[explanation.predicted_class]}, p={probs[explanation.predicted_class]:.3f})")
    fig.suptitle(title)
    fig.tight_layout()

    with atomic_path(path) as tmp:  # never a partial PNG at `path`
        fig.savefig(tmp, format="png", dpi=80)
    return path
