"""AFNet-M: Adaptive Fusion Network with Masks for 2D+3D facial expression recognition.

Paper: M. Sui, H. Li, Z. Zhu, F. Zhao, "AFNet-M: Adaptive Fusion Network with Masks for 2D+3D
Facial Expression Recognition", ICIP 2023, arXiv:2205.11785.

Two ResNet branches (texture and depth) built from timm's ResNet blocks. Mask attention (MA) follows
Layer1 and Layer2 in each branch; adaptive fusion (AF) follows Layer3 and Layer4. Reading of Fig. 1:
the fused map continues in the texture branch (the paper "incorporates depth features into texture
features"), while the depth branch keeps its own path up to the last fusion. The classifier sees the
fused Layer4 map.

The same class builds the paper's ablations (Tables 2–3) and deeper backbones:

* ``modalities``: ``'both'``, ``'texture'`` (2D only) or ``'depth'`` (3D only).
* ``fusion``: ``'adaptive'`` (AF), ``'sum'`` (S4: conv-level sum without weights), ``'fc'`` (S3:
  concatenated pooled features before the classifier), ``'decision'`` (S2: one classifier per
  branch, logits averaged), ``'data'`` (S1: texture and depth stacked as a 6-channel image into one
  trunk), ``'none'`` (single modality).
* ``fusion_stages`` / ``mask_stages``: where AF (or sum) and MA sit (paper: (3, 4) and (1, 2)).

Input: ONE packed tensor (B, 7, H, W) = texture RGB + depth (3 ch) + mask; see `afnetm_timm.pack`.
H and W must be multiples of 32. Single-modality variants take the same packed input and ignore
the unused channels, so one data pipeline serves every variant.
"""
import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.layers import LayerType, SelectAdaptivePool2d, get_act_layer, get_device_dtype
from timm.models import ResNet, build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ..layers import AdaptiveFusion, MaskAttention, SumFusion, resize_mask
from ..layers._checks import check_packed_input
from ..packing import EXPRESSION_NAMES, PACKED_CHANNELS, PACKED_MEAN, PACKED_STD

__all__ = ["AFNetM", "BackboneWeightsError", "FUSION_MODES", "MODALITIES"]

FUSION_MODES = ("adaptive", "sum", "fc", "decision", "data", "none")
MODALITIES = ("both", "texture", "depth")
_CONV_FUSION = ("adaptive", "sum")
_TWO_BRANCH_FUSION = ("adaptive", "sum", "fc", "decision")


class BackboneWeightsError(RuntimeError):
    """The ImageNet weights for the branches could not be loaded (offline, or not in the Hub cache)."""


def _create_trunk(
    backbone: str,
    in_chans: int,
    pretrained: bool,
    pretrained_tag: str,
    drop_path_rate: float,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> ResNet:
    """A timm ResNet without head, whose stem and stages become one AFNet-M branch."""
    name = f"{backbone}.{pretrained_tag}" if pretrained and pretrained_tag else backbone
    try:
        trunk = timm.create_model(
            name, pretrained=pretrained, num_classes=0, global_pool="", in_chans=in_chans,
            drop_path_rate=drop_path_rate, device=device, dtype=dtype,
        )
    except Exception as err:  # timm and huggingface_hub raise several kinds (offline mode, missing cache entry)
        if not pretrained:
            raise
        raise BackboneWeightsError(
            f"AFNet-M: could not load ImageNet weights '{name}' for the branches through timm and the Hugging Face "
            f"Hub ({type(err).__name__}: {err}). Without network access, seed the Hub cache (HF_HUB_CACHE) with "
            f"'timm/{name}', or build the model with pretrained_backbone=False."
        ) from err
    if not isinstance(trunk, ResNet):
        raise ValueError(f"AFNet-M: backbone must be a timm ResNet-family model, got '{backbone}' ({type(trunk).__name__})")
    return trunk


def _stem_of(trunk: ResNet) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv1=trunk.conv1, bn1=trunk.bn1, act1=trunk.act1))


def _merge_paths(main: torch.Tensor, depth: torch.Tensor | None, concat: bool) -> torch.Tensor:
    """The representation at a level: both paths concatenated while separate, else the main path."""
    if concat and depth is not None:
        return torch.cat([main, depth], dim=1)
    return main


class AFNetMStage(nn.Module):
    """One ResNet stage of both branches, then MA on each branch, then fusion into the texture path.

    Shapes:
        x: (B, C_in, H, W) texture path (the fused path after the first fusion).
        x_depth: (B, C_in, H, W) depth path, or None for single-path models.
        mask: (B, 1, h, w) full-resolution mask.
        returns: (x, x_depth) at (B, C, H/s, W/s); ``x_depth`` is returned unchanged once the depth
        branch has ended.
    """

    def __init__(
        self,
        blocks: nn.Module,
        depth_blocks: nn.Module | None = None,
        mask_attn: MaskAttention | None = None,
        depth_mask_attn: MaskAttention | None = None,
        fusion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.depth_blocks = depth_blocks
        self.mask_attn = mask_attn
        self.depth_mask_attn = depth_mask_attn
        self.fusion = fusion

    def forward(
        self, x: torch.Tensor, x_depth: torch.Tensor | None, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.blocks(x)
        if self.depth_blocks is not None and x_depth is not None:
            x_depth = self.depth_blocks(x_depth)
        if self.mask_attn is not None:
            stage_mask = resize_mask(mask, x.shape[-2:])  # once per stage, shared by both branches
            x = self.mask_attn(x, stage_mask)
            if self.depth_mask_attn is not None and x_depth is not None:
                x_depth = self.depth_mask_attn(x_depth, stage_mask)
        if self.fusion is not None and x_depth is not None:
            x = self.fusion(x, x_depth)
        return x, x_depth


class ClassifierHead(nn.Module):
    """Global pool → optional hidden layer (Linear + act) → dropout → Linear classifier.

    The paper does not state its head. The default AFNet-M head is 512 → 128 → classes, the
    choice that brings the three Table 4 rows closest (see MODEL_CARD.md); ``hidden_size=0``
    gives the plain ``Linear(num_features, num_classes)`` of timm's ResNet.

    Shapes:
        x: (B, C, H, W). returns: (B, num_classes); with ``pre_logits`` (B, head_hidden_size).
        With ``pool_type=''`` (no pooling) the hidden layer and classifier act per pixel and the
        output stays a map, (B, num_classes or head_hidden_size, H, W).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        pool_type: str = "avg",
        hidden_size: int = 0,
        act_layer: LayerType = "relu",
        drop_rate: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))
        self.pooled = bool(pool_type)
        pool_features = in_features * self.global_pool.feat_mult()
        if hidden_size > 0:
            self.pre_logits = nn.Sequential(OrderedDict(
                fc=nn.Linear(pool_features, hidden_size, **dd), act=get_act_layer(act_layer)(inplace=True),
            ))
            self.num_features = hidden_size
        else:
            self.pre_logits = nn.Identity()
            self.num_features = pool_features
        self.drop = nn.Dropout(drop_rate)
        self.fc = self._make_fc(num_classes, **dd)

    def _make_fc(self, num_classes: int, device=None, dtype=None) -> nn.Module:
        return nn.Linear(self.num_features, num_classes, device=device, dtype=dtype) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        """Replace the classifier (and the pooling if ``pool_type`` is given); the hidden layer is kept."""
        dd = get_device_dtype(self)
        if pool_type is not None and pool_type != self.global_pool.pool_type:
            old_mult = self.global_pool.feat_mult()
            self.global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))
            self.pooled = bool(pool_type)
            if self.global_pool.feat_mult() != old_mult:
                if self.hidden_size > 0:
                    raise ValueError(f"AFNet-M head: pool '{pool_type}' changes the feature width of the hidden layer")
                self.num_features = self.in_features * self.global_pool.feat_mult()
        self.num_classes = num_classes
        self.fc = self._make_fc(num_classes, **dd)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if not self.pooled:  # no pooling: the head acts per pixel, like 1×1 convolutions
            x = x.permute(0, 2, 3, 1)
        x = self.drop(self.pre_logits(x))
        if not pre_logits:
            x = self.fc(x)
        return x if self.pooled else x.permute(0, 3, 1, 2)


class DecisionFusionHead(nn.Module):
    """S2, decision-level fusion: one classifier head per branch on its half of the channels, logits averaged.

    Shapes:
        x: (B, 2C, H, W), texture channels first. returns: (B, num_classes), the mean of the two
        branches' logits; with ``pre_logits`` the two pre-logit vectors concatenated.
    """

    def __init__(self, branch_features: int, num_classes: int, **head_kwargs: Any) -> None:
        super().__init__()
        self.branch_features = branch_features
        self.texture = ClassifierHead(branch_features, num_classes, **head_kwargs)
        self.depth = ClassifierHead(branch_features, num_classes, **head_kwargs)
        self.num_features = self.texture.num_features + self.depth.num_features

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        self.texture.reset(num_classes, pool_type)
        self.depth.reset(num_classes, pool_type)
        self.num_features = self.texture.num_features + self.depth.num_features

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x_texture = self.texture(x[:, : self.branch_features], pre_logits)
        x_depth = self.depth(x[:, self.branch_features :], pre_logits)
        if pre_logits or self.texture.num_classes == 0:
            return torch.cat([x_texture, x_depth], dim=1)
        return (x_texture + x_depth) * 0.5


class AFNetM(nn.Module):
    """AFNet-M and its ablations as one timm model taking a packed (B, 7, H, W) input.

    Args:
        num_classes: classes (default 6: anger, disgust, fear, happiness, sadness, surprise).
        in_chans: must be 7 (texture 3 + depth 3 + mask 1); present for timm's model contract.
        global_pool: timm pool type of the head ('avg' default; '' only with ``num_classes=0``).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth in the ResNet blocks.
        backbone: timm ResNet-family model for each branch ('resnet18' as in the paper, 'resnet34',
            'resnet50', ...). MA and AF adapt to the stage widths (BasicBlock or Bottleneck).
        modalities: 'both', 'texture' or 'depth'.
        fusion: one of ``FUSION_MODES`` (see module docstring); 'none' for a single modality.
        fusion_stages: stages (1–4) followed by conv-level fusion, for 'adaptive' and 'sum'.
        mask_stages: stages (1–4) followed by mask attention in every branch; () disables MA.
        head_hidden_dim: hidden width of the classifier head (0: a single Linear layer).
        head_act_layer: activation of the hidden layer.
        ma_hidden_ratio: width between the two convs of an MA group, relative to the stage width.
        ma_act_layer: activation between the two convs of an MA group.
        ma_identity_init: MA starts as the identity (γ = 1, β = 0); see `MaskAttention`.
        init_std: std of the normal initialisation of the MA and AF convolutions (§3.1).
        pretrained_backbone: initialise every branch with ImageNet weights through timm and the
            Hub (paper §3.1); off by default. Offline, fails fast with `BackboneWeightsError`.
        backbone_pretrained_tag: timm pretrained tag of those weights ('tv_in1k': torchvision's).
        device, dtype: factory arguments for parameters and buffers.
    """

    def __init__(
        self,
        num_classes: int = 6,
        in_chans: int = PACKED_CHANNELS,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        backbone: str = "resnet18",
        modalities: str = "both",
        fusion: str = "adaptive",
        fusion_stages: Sequence[int] = (3, 4),
        mask_stages: Sequence[int] = (1, 2),
        head_hidden_dim: int = 128,
        head_act_layer: LayerType = "relu",
        ma_hidden_ratio: float = 1.0,
        ma_act_layer: LayerType = "relu",
        ma_identity_init: bool = True,
        init_std: float = 0.01,
        pretrained_backbone: bool = False,
        backbone_pretrained_tag: str = "tv_in1k",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if in_chans != PACKED_CHANNELS:
            raise ValueError(
                f"AFNetM: in_chans must be {PACKED_CHANNELS} (texture RGB 3 + depth 3 + mask 1), got {in_chans}"
            )
        if modalities not in MODALITIES:
            raise ValueError(f"AFNetM: modalities must be one of {MODALITIES}, got {modalities!r}")
        if fusion not in FUSION_MODES:
            raise ValueError(f"AFNetM: fusion must be one of {FUSION_MODES}, got {fusion!r}")
        if (modalities == "both") == (fusion == "none"):
            raise ValueError(
                f"AFNetM: fusion={fusion!r} does not fit modalities={modalities!r}: two modalities need a fusion "
                "mode, a single modality needs fusion='none'"
            )
        fusion_stages = tuple(sorted(set(int(s) for s in fusion_stages)))
        mask_stages = tuple(sorted(set(int(s) for s in mask_stages)))
        for name, stages in (("fusion_stages", fusion_stages), ("mask_stages", mask_stages)):
            if any(s not in (1, 2, 3, 4) for s in stages):
                raise ValueError(f"AFNetM: {name} must be a subset of (1, 2, 3, 4), got {stages}")
        if fusion in _CONV_FUSION and not fusion_stages:
            raise ValueError(f"AFNetM: fusion={fusion!r} needs at least one fusion stage")
        if fusion not in _CONV_FUSION:
            fusion_stages = ()

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.backbone = backbone
        self.modalities = modalities
        self.fusion_mode = fusion
        self.fusion_stages = fusion_stages
        self.mask_stages = mask_stages
        self.grad_checkpointing = False

        # which channels of the packed input the main path reads
        if fusion == "data":
            self.main_start, self.main_end = 0, 6
        elif modalities == "depth":
            self.main_start, self.main_end = 3, 6
        else:
            self.main_start, self.main_end = 0, 3
        self.has_depth_path = fusion in _TWO_BRANCH_FUSION
        last_depth_stage = (max(fusion_stages) if fusion_stages else 4) if self.has_depth_path else 0

        trunk = _create_trunk(
            backbone, self.main_end - self.main_start, pretrained_backbone, backbone_pretrained_tag,
            drop_path_rate, device, dtype,
        )
        depth_trunk: ResNet | None = None
        if self.has_depth_path:
            depth_trunk = copy.deepcopy(trunk) if pretrained_backbone else _create_trunk(
                backbone, 3, False, backbone_pretrained_tag, drop_path_rate, device, dtype)

        self.stem = _stem_of(trunk)
        self.stem_pool = trunk.maxpool
        self.depth_stem = _stem_of(depth_trunk) if depth_trunk is not None else None
        self.depth_stem_pool = depth_trunk.maxpool if depth_trunk is not None else None

        widths = [info["num_chs"] for info in trunk.feature_info]  # stem, layer1..layer4
        reductions = [info["reduction"] for info in trunk.feature_info]
        stages = []
        for idx in range(1, 5):
            width = widths[idx]
            has_depth = depth_trunk is not None and idx <= last_depth_stage
            use_mask = idx in mask_stages
            ma_kwargs = dict(
                hidden_channels=max(1, round(width * ma_hidden_ratio)), act_layer=ma_act_layer,
                init_std=init_std, identity_init=ma_identity_init, **dd,
            )
            fusion_layer: nn.Module | None = None
            if idx in fusion_stages:
                fusion_layer = AdaptiveFusion(width, init_std=init_std, **dd) if fusion == "adaptive" else SumFusion(width)
            stages.append(AFNetMStage(
                blocks=getattr(trunk, f"layer{idx}"),
                depth_blocks=getattr(depth_trunk, f"layer{idx}") if has_depth else None,
                mask_attn=MaskAttention(width, **ma_kwargs) if use_mask else None,
                depth_mask_attn=MaskAttention(width, **ma_kwargs) if use_mask and has_depth else None,
                fusion=fusion_layer,
            ))
        self.stages = nn.ModuleList(stages)

        # Intermediate features: both paths concatenated while they are separate, the fused map after
        # the first conv-level fusion, the single path otherwise.
        first_fusion = min(fusion_stages) if fusion_stages else 99
        self.concat_levels = [
            self.has_depth_path and level <= last_depth_stage and level < first_fusion for level in range(5)
        ]
        self.feature_info = [
            dict(num_chs=widths[level] * (2 if self.concat_levels[level] else 1), reduction=reductions[level],
                 module="stem" if level == 0 else f"stages.{level - 1}")
            for level in range(5)
        ]
        self.concat_features = self.concat_levels[-1]
        self.num_features = self.feature_info[-1]["num_chs"]

        head_kwargs = dict(pool_type=global_pool, hidden_size=head_hidden_dim, act_layer=head_act_layer,
                           drop_rate=drop_rate, **dd)
        if fusion == "decision":
            self.head = DecisionFusionHead(widths[-1], num_classes, **head_kwargs)
        else:
            self.head = ClassifierHead(self.num_features, num_classes, **head_kwargs)
        self.head_hidden_size = self.head.num_features

    # --- timm model contract -------------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay: stems, then stages (blocks, then MA/AF)."""
        if coarse:
            return dict(stem=r"^(?:depth_)?stem", blocks=r"^stages\.(\d+)")
        return dict(
            stem=r"^(?:depth_)?stem",
            blocks=[
                (r"^stages\.(\d+)\.(?:depth_)?blocks\.(\d+)", None),
                (r"^stages\.(\d+)\.(?:depth_mask_attn|mask_attn|fusion)", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of keeping its activations."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module | tuple[nn.Module, ...]:
        if isinstance(self.head, DecisionFusionHead):
            return ("head.texture.fc", "head.depth.fc") if name_only else (self.head.texture.fc, self.head.depth.fc)
        return "head.fc" if name_only else self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier for ``num_classes`` (0: features); ``global_pool=''`` returns unpooled maps."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(num_classes, global_pool)
        self.head_hidden_size = self.head.num_features

    # --- forward ---------------------------------------------------------------------------------

    def _split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        check_packed_input(x, self.in_chans, 32)
        main = x[:, self.main_start:self.main_end]
        depth: torch.Tensor | None = None
        if self.has_depth_path:
            depth = x[:, 3:6]
        return main, depth, x[:, 6:7]

    def _stems(
        self, main: torch.Tensor, depth: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        main = self.stem(main)
        if self.depth_stem is not None and depth is not None:
            depth = self.depth_stem(depth)
        return main, depth

    def _stem_pools(
        self, main: torch.Tensor, depth: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        main = self.stem_pool(main)
        if self.depth_stem_pool is not None and depth is not None:
            depth = self.depth_stem_pool(depth)
        return main, depth

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 7, H, W) → unpooled features (B, num_features, H/32, W/32)."""
        main, depth, mask = self._split_input(x)
        main, depth = self._stem_pools(*self._stems(main, depth))
        for stage in self.stages:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                main, depth = checkpoint(stage, main, depth, mask)
            else:
                main, depth = stage(main, depth, mask)
        return _merge_paths(main, depth, self.concat_features)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify (B, num_features, h, w); with ``pre_logits`` return (B, head_hidden_size)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 7, H, W) packed input → (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features at the stem (stride 2) and after each stage (strides 4–32), as described by ``feature_info``.

        Args:
            indices: take the last n levels if int, all if None, the listed levels otherwise.
            norm: unused (no final norm layer), accepted for timm compatibility.
            stop_early: stop after the last requested level.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of intermediates.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"AFNetM: output_fmt must be 'NCHW', got {output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        main, depth, mask = self._split_input(x)
        main, depth = self._stems(main, depth)
        if 0 in take_indices:
            intermediates.append(_merge_paths(main, depth, self.concat_levels[0]))
        main, depth = self._stem_pools(main, depth)
        stages = self.stages[:max_index] if stop_early else self.stages
        for idx, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                main, depth = checkpoint(stage, main, depth, mask)
            else:
                main, depth = stage(main, depth, mask)
            if idx in take_indices:
                intermediates.append(_merge_paths(main, depth, self.concat_levels[idx]))
        if intermediates_only:
            return intermediates
        last = len(stages)
        return _merge_paths(main, depth, self.concat_levels[last]), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last requested level (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.stages = self.stages[:max_index]
        if max_index == 0:
            self.stem_pool = nn.Identity()
            if self.depth_stem_pool is not None:
                self.depth_stem_pool = nn.Identity()
        prune_end = max_index < len(self.feature_info) - 1
        if prune_end:  # features now end at the last kept level; the head was sized for the final one
            self.concat_features = self.concat_levels[max_index]
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:  # no pooling, no hidden layer, no classifier: unpooled features
            self.head = ClassifierHead(self.num_features, 0, pool_type="", **get_device_dtype(self))
            self.num_classes, self.global_pool = 0, ""
            self.head_hidden_size = self.head.num_features
        return take_indices


# --- configs and registrations -----------------------------------------------------------------

_PAPER_NAME = "AFNet-M: Adaptive Fusion Network with Masks for 2D+3D Facial Expression Recognition"


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": len(EXPRESSION_NAMES),
        "label_names": EXPRESSION_NAMES,
        "input_size": (PACKED_CHANNELS, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": PACKED_MEAN,
        "std": PACKED_STD,
        "first_conv": ("stem.conv1", "depth_stem.conv1"),
        "classifier": "head.fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2205.11785",
        "paper_name": _PAPER_NAME,
        "notes": ("Input: packed (7, H, W) = texture RGB, depth x3, mask; see afnetm_timm.pack.",),
        **kwargs,
    }


_SINGLE_PATH = {"first_conv": "stem.conv1"}

#: Hugging Face Hub organisation of the published AFNet-M weights.
HUB_ORG = "afnetm-timm"
#: Datasets of the weights we mean to publish: Hub tag → name.
HUB_DATASETS: dict[str, str] = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus"}
#: ``arch.tag`` names whose trained and measured weights are on the Hub. Add a tag only after
#: ``afnetm hub push`` has published it; the tags below that are not listed fail at once with
#: ``pretrained=True`` (unless the local Hugging Face cache holds their files), with no network retries.
PUBLISHED_TAGS: frozenset[str] = frozenset()


def _hub_cfg(variant: str, tag: str, **kwargs: Any) -> dict[str, Any]:
    """Cfg of a tag with Hub weights: ``afnetm-timm/<variant>.<tag>``, safetensors only, the dataset's terms."""
    dataset = HUB_DATASETS[tag]
    return _cfg(
        hf_hub_id=f"{HUB_ORG}/{variant}.{tag}",
        hf_hub_filename="model.safetensors",
        license="other",
        description=f"{variant} trained on {dataset} (6 expressions, subject-independent protocol).",
        notes=(
            "Input: packed (7, H, W) = texture RGB, depth x3, mask; see afnetm_timm.pack.",
            f"Weights trained on {dataset} inherit the {dataset} licence terms (licensed, request-only data).",
            "Expression recognition is not a reading of emotions; not for surveillance or decisions about people.",
        ),
        **kwargs,
    )


def _untagged_default_first(cfgs: dict[str, Any]) -> dict[str, Any]:
    """Keep each architecture's untagged cfg (no weights) as its default.

    timm makes the first tag with weights the default; AFNet-M's tags point at Hub repos, and
    ``timm.create_model('afnet_m')`` must stay the untagged model: tags are chosen explicitly.
    """
    for default_cfg in cfgs.values():
        if "" in default_cfg.tags:
            default_cfg.tags.remove("")
            default_cfg.tags.appendleft("")
    return cfgs


default_cfgs = _untagged_default_first(generate_default_cfgs({
    "afnet_m": _cfg(),
    "afnet_m.bu3dfe": _hub_cfg("afnet_m", "bu3dfe"),
    "afnet_m.bosphorus": _hub_cfg("afnet_m", "bosphorus"),
    "afnet_m_no_ma": _cfg(),
    "afnet_m_no_af": _cfg(),
    "afnet_m_2d": _cfg(**_SINGLE_PATH),
    "afnet_m_2d_no_ma": _cfg(**_SINGLE_PATH),
    "afnet_m_3d": _cfg(**_SINGLE_PATH),
    "afnet_m_3d_no_ma": _cfg(**_SINGLE_PATH),
    "afnet_m_s1": _cfg(**_SINGLE_PATH),
    "afnet_m_s2": _cfg(classifier=("head.texture.fc", "head.depth.fc")),
    "afnet_m_s3": _cfg(),
    "afnet_m_s4": _cfg(),
    "afnet_m_resnet34": _cfg(),
    "afnet_m_resnet50": _cfg(),
}))


def _create_afnet_m(variant: str, pretrained: bool = False, **kwargs: Any) -> AFNetM:
    if pretrained:
        # safetensors only, clear errors, no network retries for unpublished tags (see afnetm_timm.hub.pretrained)
        from ..hub.pretrained import prepare_pretrained

        kwargs = prepare_pretrained(variant, kwargs, published=PUBLISHED_TAGS)
    return build_model_with_cfg(
        AFNetM, variant, pretrained,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3, 4)),
        # timm's benchmark.py passes in_chans=3; AFNet-M always takes the packed 7 channels
        kwargs_filter=("in_chans",),
        **kwargs,
    )


@register_model
def afnet_m(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """AFNet-M (paper): dual ResNet18, MA after Layer1–2, adaptive fusion after Layer3–4."""
    return _create_afnet_m("afnet_m", pretrained, **kwargs)


@register_model
def afnet_m_no_ma(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """AFNet-M without mask attention ("Ours w/o MA", Tables 3–4)."""
    return _create_afnet_m("afnet_m_no_ma", pretrained, **dict(dict(mask_stages=()), **kwargs))


@register_model
def afnet_m_no_af(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """AFNet-M without adaptive fusion: MA, and Layer3–4 fused by a plain sum ("Ours w/o AF", Table 4)."""
    return _create_afnet_m("afnet_m_no_af", pretrained, **dict(dict(fusion="sum"), **kwargs))


@register_model
def afnet_m_2d(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """Texture only, with MA (Table 3, 2D + MA)."""
    return _create_afnet_m("afnet_m_2d", pretrained, **dict(dict(modalities="texture", fusion="none"), **kwargs))


@register_model
def afnet_m_2d_no_ma(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """Texture only, without MA: a plain ResNet18 on the texture (Table 3, 2D)."""
    return _create_afnet_m(
        "afnet_m_2d_no_ma", pretrained, **dict(dict(modalities="texture", fusion="none", mask_stages=()), **kwargs))


@register_model
def afnet_m_3d(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """Depth only, with MA (Table 3, 3D + MA)."""
    return _create_afnet_m("afnet_m_3d", pretrained, **dict(dict(modalities="depth", fusion="none"), **kwargs))


@register_model
def afnet_m_3d_no_ma(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """Depth only, without MA: a plain ResNet18 on the depth image (Table 3, 3D)."""
    return _create_afnet_m(
        "afnet_m_3d_no_ma", pretrained, **dict(dict(modalities="depth", fusion="none", mask_stages=()), **kwargs))


@register_model
def afnet_m_s1(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """S1, data-level fusion: texture and depth stacked as 6 channels into one ResNet18, no MA (Table 2)."""
    return _create_afnet_m("afnet_m_s1", pretrained, **dict(dict(fusion="data", mask_stages=()), **kwargs))


@register_model
def afnet_m_s2(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """S2, decision-level fusion: one classifier per branch, logits averaged, no MA (Table 2)."""
    return _create_afnet_m("afnet_m_s2", pretrained, **dict(dict(fusion="decision", mask_stages=()), **kwargs))


@register_model
def afnet_m_s3(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """S3 (FC), feature-level fusion at the fully-connected layer: pooled features concatenated, no MA (Table 2)."""
    return _create_afnet_m("afnet_m_s3", pretrained, **dict(dict(fusion="fc", mask_stages=()), **kwargs))


@register_model
def afnet_m_s4(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """S4, conv-level fusion at Layer3–4 by a plain sum (no importance weights), no MA (Table 2)."""
    return _create_afnet_m("afnet_m_s4", pretrained, **dict(dict(fusion="sum", mask_stages=()), **kwargs))


@register_model
def afnet_m_resnet34(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """AFNet-M on two ResNet34 branches (beyond the paper)."""
    return _create_afnet_m("afnet_m_resnet34", pretrained, **dict(dict(backbone="resnet34"), **kwargs))


@register_model
def afnet_m_resnet50(pretrained: bool = False, **kwargs: Any) -> AFNetM:
    """AFNet-M on two ResNet50 branches (Bottleneck blocks; MA at 256/512, AF at 1024/2048 channels)."""
    return _create_afnet_m("afnet_m_resnet50", pretrained, **dict(dict(backbone="resnet50"), **kwargs))
