"""Load the EMRRG authors' released checkpoints into :class:`XrayMambaModel` / :class:`EMRRGForConditionalGeneration`.

The authors (Zhang et al., 2025) release the pre-trained X-ray Mamba of MambaXray-VL (``MambaXrayCLIP-B.pth``) and
EMRRG fine-tuned on CheXpert Plus (``EMRRG-CXP.pth``), both ``torch.save({"model": state_dict, ...})`` files. The
facts this conversion relies on, read from their code (``EMRRG/models/MambaXrayVL_DownStream.py``, the ARM
fine-tuning backbone ``arm_base_pz16`` it builds, ``EMRRG/launch/*.sh``):

* Backbone (keys ``visual_encoder.*`` in both files): ``patch_embed.proj`` (conv), ``cls_token`` inserted in the
  middle of the patches, ``pos_embed`` ``(1, patches + 1, D)`` added *after* the insertion, blocks ``layers.i`` with
  ``norm1`` / ``norm2`` (LayerNorm with bias), ``mixer`` (Mamba, expand 1, four routes: no suffix / ``_b`` / ``_c`` /
  ``_c_b`` = row, row reversed, column, column reversed, each with ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log`` and
  ``D``; ``in_proj`` / ``out_proj`` shared, route outputs averaged), ``mlp.w1 / w2 / w3`` (SwiGLU with bias,
  ``w3(SiLU(w1 h) * w2 h)``), final ``norm_f``, and an unused classification ``head``.
* EMRRG file: the backbone, the projector ``llama_proj`` + ``layer_norm``, and nothing of the frozen LLM
  (Llama-2-7B-chat, which their code loads by name). Views of a study are averaged.
* Their evaluation script (``launch_mambaclip_test_cheXpert.sh``) loads the file with ``strict=False`` and without
  ``--lora_X`` or ``--use_hybrid_decoder``: the ``mixer.lora_X`` adapters in the file are not applied to the results
  they report, and the LLM runs without hybrid layers. The converted model therefore drops the adapters (reported),
  and its hybrid layers start with closed gates, which makes it compute exactly the authors' evaluated model.

Every key is either mapped, or dropped for a reason the :class:`ConversionReport` names, or an error naming it.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..image_processing_xray import XrayImageProcessor
from .configuration_emrrg import XrayMambaConfig
from .modeling_emrrg import EMRRGForConditionalGeneration
from .modeling_xray_mamba import XrayMambaModel
from .processing_emrrg import EMRRGProcessor

Tensor = torch.Tensor

#: The LLM the authors' code loads by name (``MambaXrayVL_DownStream.py``).
AUTHORS_TEXT_MODEL = "meta-llama/Llama-2-7b-chat-hf"
#: Prefix of the backbone in both released files.
AUTHORS_BACKBONE_PREFIX = "visual_encoder."
#: The authors' route suffixes (Vim's ``bimamba`` naming) and the scan direction each one is in this package.
AUTHORS_ROUTES = {"": "row", "_b": "row_reversed", "_c": "col", "_c_b": "col_reversed"}
#: The suffix of each scan direction (the 1-D ``forward`` / ``backward`` are Vim's unsuffixed / ``_b`` routes).
ROUTE_SUFFIXES = {d: suffix for suffix, d in AUTHORS_ROUTES.items()} | {"forward": "", "backward": "_b"}
#: The per-route tensors of one authors' mixer, without their route suffix.
_ROUTE_NAMES = ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D")
#: Decoding settings of the authors' CheXpert Plus evaluation script.
AUTHORS_GENERATION = {
    "num_beams": 3,
    "min_new_tokens": 80,
    "max_new_tokens": 120,
    "repetition_penalty": 2.0,
    "length_penalty": 2.0,
}
#: Backbone keys deliberately not carried over, with the reason the report gives.
DROPPED_BACKBONE_KEYS = {
    re.compile(r"head\.(weight|bias)"): "classification head of the ARM fine-tuning model (EMRRG reads the tokens)",
    re.compile(r"layers\.\d+\.mixer\.lora_X\.adapter_(down|up)\.weight"): (
        "LoRA_X adapter of the authors' training code; their evaluation script loads the checkpoint without "
        "--lora_X, so it is not part of the model they report"
    ),
}


class UnmappedKeysError(ValueError):
    """Checkpoint keys with no place in the converted model (each one named)."""


@dataclass
class ConversionReport:
    """What a conversion did: the number of tensors loaded, and each dropped key with the reason."""

    source: str
    loaded: int = 0
    dropped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.loaded} tensors loaded, {len(self.dropped)} dropped"]
        reasons: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            lines.append(f"  dropped {shown}: {reason}")
        return "\n".join(lines)


def load_authors_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, Tensor]:
    """The state dict of an authors' file (``{"model": state_dict, ...}`` or a bare state dict).

    Their files also hold their argparse settings (Python objects): reading those needs ``allow_pickle=True``,
    which runs code from the file, so only do it for a file you trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:  # a damaged file raises anything from KeyError to RuntimeError, by torch release
        if "Weights only load failed" in str(error):
            raise ValueError(
                f"{path}: holds Python objects besides tensors (the authors' files carry their argparse settings). "
                "If you trust the file, pass allow_pickle=True (--allow_pickle on the command line)."
            ) from error
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})") from error
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: expected a state dict, or a dict with one under 'model'")
    return state_dict


def _strip_prefix(state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def backbone_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The backbone's tensors: those under ``visual_encoder.`` if the file has that prefix, else all of them."""
    if any(key.startswith(AUTHORS_BACKBONE_PREFIX) for key in state_dict):
        return _strip_prefix(state_dict, AUTHORS_BACKBONE_PREFIX)
    return dict(state_dict)


def _route_key(name: str, suffix: str) -> str:
    """A tensor name with a route suffix: ``A_log`` -> ``A_c_b_log``, ``conv1d.weight`` -> ``conv1d_c_b.weight``."""
    if name == "A_log":
        return f"A{suffix}_log"
    module, _, tensor = name.partition(".")
    return f"{module}{suffix}.{tensor}" if tensor else f"{module}{suffix}"


def describe_checkpoint(state_dict: dict[str, Tensor], most: int = 6) -> str:
    """What a state dict holds, for errors: its tensor count and its top-level key prefixes, most frequent first."""
    prefixes = Counter(key.split(".", 1)[0] for key in state_dict)
    listed = ", ".join(f"{name}.* ({count})" for name, count in prefixes.most_common(most))
    more = f", and {len(prefixes) - most} more" if len(prefixes) > most else ""
    return f"{len(state_dict)} tensors: {listed or 'none'}{more}"


def _layout_hint(state_dict: dict[str, Tensor]) -> str:
    """The known layout an unsupported state dict is closest to, as a sentence (empty when none is close)."""
    if any("gdlm" in key or "visual_extractor" in key for key in state_dict):
        return (
            "; it looks like an RRG-Mamba model, which needs no conversion: load its saved folder with "
            "RRGMambaForConditionalGeneration.from_pretrained"
        )
    if any(key.startswith(("embeddings.", "vision_model.", "model.vision_model.")) for key in state_dict):
        return "; it looks like a model saved by this package, which needs no conversion: load it with from_pretrained"
    return ""


def _require(state_dict: dict[str, Tensor], key: str) -> Tensor:
    if key not in state_dict:
        raise UnmappedKeysError(f"{key}: missing from the checkpoint (needed by the authors' X-ray Mamba)")
    return state_dict[key]


def xray_mamba_config_from_authors(state_dict: dict[str, Tensor], **overrides: Any) -> XrayMambaConfig:
    """The :class:`XrayMambaConfig` of an authors' backbone, read from its tensor shapes."""
    if "cls_token" not in state_dict:
        if "patch_embed.proj.weight" in state_dict and any(key.startswith("layers.") for key in state_dict):
            raise UnmappedKeysError(
                "cls_token: missing. This looks like an ARM pre-training checkpoint (no class token, 4x4 token "
                "clusters, one scan route), which EMRRG never runs; convert the MambaXray-VL file "
                "(MambaXrayCLIP-B.pth) or an ARM fine-tuning checkpoint instead"
            )
        raise UnmappedKeysError(
            f"not a supported checkpoint: it has none of the authors' X-ray Mamba tensors (cls_token, "
            f"patch_embed.*, layers.*); it holds {describe_checkpoint(state_dict)}{_layout_hint(state_dict)}"
        )
    projection = _require(state_dict, "patch_embed.proj.weight")
    hidden, channels, patch = projection.shape[0], projection.shape[1], projection.shape[-1]
    patches = _require(state_dict, "pos_embed").shape[1] - 1
    side = math.isqrt(patches)
    if side * side != patches:
        raise UnmappedKeysError(f"pos_embed: {patches} patch positions do not form a square grid")
    layers = sorted({int(m.group(1)) for key in state_dict if (m := re.match(r"layers\.(\d+)\.", key))})
    if layers != list(range(len(layers))) or not layers:
        raise UnmappedKeysError(f"layers: expected blocks layers.0 .. layers.N-1, found indices {layers}")
    routes = [suffix for suffix in AUTHORS_ROUTES if f"layers.0.mixer.{_route_key('A_log', suffix)}" in state_dict]
    if routes not in ([""], ["", "_b"], list(AUTHORS_ROUTES)):
        raise UnmappedKeysError(f"layers.0.mixer: unexpected set of scan routes {routes}")
    directions = {1: ["forward"], 2: ["forward", "backward"], 4: [AUTHORS_ROUTES[s] for s in routes]}[len(routes)]
    in_proj = _require(state_dict, "layers.0.mixer.in_proj.weight")
    if in_proj.shape[0] % (2 * hidden):
        raise UnmappedKeysError(
            f"layers.0.mixer.in_proj.weight: {in_proj.shape[0]} outputs is not [x | z] of a multiple of {hidden}"
        )
    settings = {
        "image_size": side * patch,
        "patch_size": patch,
        "num_channels": channels,
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "intermediate_size": _require(state_dict, "layers.0.mlp.w1.weight").shape[0],
        "d_state": _require(state_dict, "layers.0.mixer.A_log").shape[1],
        "d_conv": _require(state_dict, "layers.0.mixer.conv1d.weight").shape[-1],
        "expand": in_proj.shape[0] // 2 // hidden,
        "dt_rank": _require(state_dict, "layers.0.mixer.dt_proj.weight").shape[1],
        "scan_directions": directions,
        "norm_type": "layer_norm",
        "mlp_bias": "layers.0.mlp.w1.bias" in state_dict,
    }
    return XrayMambaConfig(**{**settings, **overrides})


def _route_tensors(state_dict: dict[str, Tensor], prefix: str, suffixes: list[str]) -> dict[str, Tensor]:
    """One layer's per-route tensors stacked (S6 parameters) or concatenated (the grouped convolution)."""

    def gather(name: str) -> list[Tensor]:
        return [_require(state_dict, prefix + _route_key(name, suffix)) for suffix in suffixes]

    return {
        "conv1d.weight": torch.cat(gather("conv1d.weight")),
        "conv1d.bias": torch.cat(gather("conv1d.bias")),
        "ssm.x_proj_weight": torch.stack(gather("x_proj.weight")),
        "ssm.dt_proj_weight": torch.stack(gather("dt_proj.weight")),
        "ssm.dt_proj_bias": torch.stack(gather("dt_proj.bias")),
        "ssm.A_log": torch.stack(gather("A_log")),
        "ssm.D": torch.stack(gather("D")),
    }


_PLAIN_LAYER_KEYS = {
    "norm1": "mixer_norm",
    "norm2": "mlp_norm",
    "mixer.in_proj": "mixer.in_proj",
    "mixer.out_proj": "mixer.out_proj",
    "mlp.w1": "mlp.gate_proj",
    "mlp.w2": "mlp.up_proj",
    "mlp.w3": "mlp.down_proj",
}


def convert_xray_mamba_state_dict(
    state_dict: dict[str, Tensor], config: XrayMambaConfig
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """An authors' backbone state dict -> (this package's ``XrayMambaModel`` state dict, dropped keys + reasons).

    Raises :class:`UnmappedKeysError` naming every key that is neither mapped nor deliberately dropped.
    """
    suffixes = [ROUTE_SUFFIXES[direction] for direction in config.scan_directions]
    converted: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(source: str, target: str) -> None:
        converted[target] = _require(state_dict, source)
        used.add(source)

    for name in ("weight", "bias"):
        take(f"patch_embed.proj.{name}", f"embeddings.projection.{name}")
        take(f"norm_f.{name}", f"norm.{name}")
    take("cls_token", "embeddings.cls_token")
    positions, middle = state_dict["pos_embed"], (state_dict["pos_embed"].shape[1] - 1) // 2
    # Theirs: [first half of the patches, class token, second half]; ours: [patches ; class token].
    converted["embeddings.position_embeddings"] = torch.cat(
        [positions[:, :middle], positions[:, middle + 1 :], positions[:, middle : middle + 1]], dim=1
    )
    used.add("pos_embed")
    for i in range(config.num_hidden_layers):
        prefix = f"layers.{i}."
        for source, target in _PLAIN_LAYER_KEYS.items():
            for name in ("weight", "bias"):
                key = f"{prefix}{source}.{name}"
                if key in state_dict:
                    take(key, f"{prefix}{target}.{name}")
        for target, tensor in _route_tensors(state_dict, prefix + "mixer.", suffixes).items():
            converted[f"{prefix}mixer.{target}"] = tensor
        used.update(prefix + "mixer." + _route_key(n, s) for s in suffixes for n in _ROUTE_NAMES)
    dropped, unmapped = {}, []
    for key in state_dict:
        if key in used:
            continue
        reason = next((text for pattern, text in DROPPED_BACKBONE_KEYS.items() if pattern.fullmatch(key)), None)
        if reason is None:
            unmapped.append(key)
        else:
            dropped[key] = reason
    if unmapped:
        raise UnmappedKeysError(
            f"{len(unmapped)} checkpoint key(s) have no place in XrayMambaModel: {', '.join(unmapped)}"
        )
    return converted, dropped


def _load_exactly(model: torch.nn.Module, state_dict: dict[str, Tensor], what: str) -> None:
    """Load ``state_dict`` into ``model``, failing on any missing or unexpected key or shape, each named."""
    expected = model.state_dict()
    wrong_shape = [
        f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and value.shape != expected[key].shape
    ]
    unexpected = [key for key in state_dict if key not in expected]
    if wrong_shape or unexpected:
        raise UnmappedKeysError(f"{what}: keys do not fit the model: {', '.join(wrong_shape + unexpected)}")
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        raise UnmappedKeysError(f"{what}: the checkpoint lacks {', '.join(result.missing_keys)}")


def convert_xray_mamba_checkpoint(
    checkpoint: str | os.PathLike | dict[str, Tensor], allow_pickle: bool = False, **config_overrides: Any
) -> tuple[XrayMambaModel, ConversionReport]:
    """An authors' X-ray Mamba (``MambaXrayCLIP-B.pth``, an EMRRG file, or an ARM fine-tuning checkpoint) as an
    :class:`XrayMambaModel`. Keys outside ``visual_encoder.`` (e.g. the CLIP text encoder) are not read."""
    source = "state dict" if isinstance(checkpoint, dict) else os.fspath(checkpoint)
    full = checkpoint if isinstance(checkpoint, dict) else load_authors_checkpoint(checkpoint, allow_pickle)
    backbone = backbone_state_dict(full)
    config = xray_mamba_config_from_authors(backbone, **config_overrides)
    converted, dropped = convert_xray_mamba_state_dict(backbone, config)
    model = XrayMambaModel(config)
    _load_exactly(model, converted, source)
    outside = len(full) - len(backbone)
    report = ConversionReport(source=source, loaded=len(converted), dropped=dropped)
    if outside:
        report.dropped[f"{outside} keys outside {AUTHORS_BACKBONE_PREFIX}"] = "not part of the X-ray Mamba"
    return model.eval(), report


# ----------------------------------------------------------------------------------------------------------------
# The whole EMRRG model
# ----------------------------------------------------------------------------------------------------------------

AUTHORS_PROJECTOR_KEYS = {
    "llama_proj.weight": "multi_modal_projector.linear.weight",
    "llama_proj.bias": "multi_modal_projector.linear.bias",
    "layer_norm.weight": "multi_modal_projector.layer_norm.weight",
    "layer_norm.bias": "multi_modal_projector.layer_norm.bias",
}
AUTHORS_TEXT_PREFIX = "llama_model."
#: ``--cross_attn_every_n_layers`` default of the authors' code.
AUTHORS_HYBRID_INTERVAL = 8
_HYBRID_KEY = re.compile(r"llama_model\.model\.layers\.(\d+)\.self_attn\.(cross_attn_\w+?)(\.\d+)?(\.weight|\.bias)?")
#: Why the gates of the authors' hybrid layers are not carried over.
INERT_GATE_REASON = (
    "gate of the authors' hybrid layer: their code never hands the layer the visual tokens (condition_vis_x is never "
    "called), so its cross-attention was inert in the model they ran; the converted gate starts closed, the same"
)


def authors_checkpoint_kind(state_dict: dict[str, Tensor]) -> str:
    """``"emrrg"`` for an authors' EMRRG file (it has the projector ``llama_proj``), else ``"xray_mamba"``."""
    return "emrrg" if any(key in state_dict for key in AUTHORS_PROJECTOR_KEYS) else "xray_mamba"


def _hybrid_layout(state_dict: dict[str, Tensor], num_layers: int) -> dict[str, int]:
    """``hybrid_layer_start`` / ``hybrid_layer_interval`` of the hybrid layers the file has; without any, the
    authors' every-8th-layer layout (``range(0, num_layers, 8)``, their ``cross_attn_every_n_layers``)."""
    indices = sorted({int(m.group(1)) for key in state_dict if (m := _HYBRID_KEY.fullmatch(key))})
    if not indices:
        return {"hybrid_layer_start": 0, "hybrid_layer_interval": min(AUTHORS_HYBRID_INTERVAL, num_layers)}
    interval = indices[1] - indices[0] if len(indices) > 1 else num_layers
    if indices != list(range(indices[0], num_layers, interval)):
        raise UnmappedKeysError(f"llama_model: hybrid layers {indices} are not evenly spaced from {indices[0]}")
    return {"hybrid_layer_start": indices[0], "hybrid_layer_interval": interval}


def _text_target(key: str) -> tuple[str | None, str | None]:
    """(our key, or None; the reason it is dropped, or None) for a ``llama_model.*`` key of the authors' file."""
    match = _HYBRID_KEY.fullmatch(key)
    if match is None:
        return "language_model." + key[len(AUTHORS_TEXT_PREFIX) :], None
    layer, name, _, tensor = match.groups()
    prefix = f"language_model.model.layers.{layer}.self_attn.gated_cross_attn."
    if name == "cross_attn_kv_proj":
        return prefix + "kv_proj" + (tensor or ""), None
    if name in ("cross_attn_gate_proj", "cross_attn_warm_up_gate"):
        return None, INERT_GATE_REASON
    return None, None


def _emrrg_head_state_dict(
    state_dict: dict[str, Tensor], expected: dict[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The projector and LLM tensors of an authors' EMRRG file in this package's names (+ dropped keys)."""
    converted, dropped, unmapped = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith(AUTHORS_BACKBONE_PREFIX):
            continue
        target, reason = (AUTHORS_PROJECTOR_KEYS.get(key), None)
        if target is None and key.startswith(AUTHORS_TEXT_PREFIX):
            target, reason = _text_target(key)
        if reason is not None:
            dropped[key] = reason
        elif target is None or target not in expected or expected[target].shape != value.shape:
            unmapped.append(key if target not in expected else f"{key} {tuple(value.shape)}")
        else:
            converted[target] = value
    if unmapped:
        raise UnmappedKeysError(
            f"{len(unmapped)} checkpoint key(s) have no place in EMRRGForConditionalGeneration with this LLM: "
            f"{', '.join(unmapped)}"
        )
    missing = [key for key in AUTHORS_PROJECTOR_KEYS if key not in state_dict]
    if missing:
        raise UnmappedKeysError(f"the checkpoint lacks the projector: {', '.join(missing)}")
    return converted, dropped


def convert_emrrg_checkpoint(
    checkpoint: str | os.PathLike | dict[str, Tensor],
    text_model_name_or_path: str = AUTHORS_TEXT_MODEL,
    backbone_checkpoint: str | os.PathLike | dict[str, Tensor] | None = None,
    num_views: int = 1,
    allow_pickle: bool = False,
    dtype: torch.dtype | None = None,
    **text_model_kwargs: Any,
) -> tuple[EMRRGForConditionalGeneration, EMRRGProcessor, ConversionReport]:
    """An authors' EMRRG file (e.g. ``EMRRG-CXP.pth``) + the LLM it names -> (model, processor, report).

    ``backbone_checkpoint`` (``MambaXrayCLIP-B.pth``) supplies the backbone tensors the EMRRG file lacks (their runs
    with a frozen backbone save none), as their code loads it before the EMRRG file. The LLM and its tokenizer load
    from ``text_model_name_or_path`` (Llama-2-7B-chat by default; a local folder works offline); the processor uses
    the paper's prompt, 224 px films (their Swin image processor) and averages the views of a study, as their code.
    """
    source = "state dict" if isinstance(checkpoint, dict) else os.fspath(checkpoint)
    state = checkpoint if isinstance(checkpoint, dict) else load_authors_checkpoint(checkpoint, allow_pickle)
    backbone: dict[str, Tensor] = {}
    if isinstance(backbone_checkpoint, dict):
        backbone = backbone_state_dict(backbone_checkpoint)
    elif backbone_checkpoint is not None:
        backbone = backbone_state_dict(load_authors_checkpoint(backbone_checkpoint, allow_pickle))
    backbone.update(_strip_prefix(state, AUTHORS_BACKBONE_PREFIX))
    if not backbone:
        raise UnmappedKeysError(
            f"{source}: no {AUTHORS_BACKBONE_PREFIX}* keys (a run with a frozen backbone saves none); pass the "
            "backbone file as backbone_checkpoint (--backbone_checkpoint MambaXrayCLIP-B.pth)"
        )
    vision_config = xray_mamba_config_from_authors(backbone)
    vision_state, dropped = convert_xray_mamba_state_dict(backbone, vision_config)
    vision_model = XrayMambaModel(vision_config)
    _load_exactly(vision_model, vision_state, f"{source} ({AUTHORS_BACKBONE_PREFIX}*)")

    tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path)
    side = vision_config.image_size
    processor = EMRRGProcessor(
        image_processor=XrayImageProcessor(size=side, crop_size=side),
        tokenizer=tokenizer,
        image_seq_length=vision_config.num_tokens(),
        multi_view_fusion="mean",
    )
    if dtype is not None:  # load the LLM in the target dtype at once (a 7B model in float32 takes 27 GB)
        text_model_kwargs.setdefault("dtype", dtype)
    language_model = AutoModelForCausalLM.from_pretrained(text_model_name_or_path, **text_model_kwargs)
    model = EMRRGForConditionalGeneration.from_vision_text_pretrained(
        vision_model,
        language_model,
        image_token_id=processor.image_token_id,
        num_views=num_views,
        multi_view_fusion="mean",
        **_hybrid_layout(state, language_model.config.num_hidden_layers),
    )
    head_state, head_dropped = _emrrg_head_state_dict(state, model.state_dict())
    model.load_state_dict(head_state, strict=False)
    model.generation_config.update(**AUTHORS_GENERATION)
    if dtype is not None:
        model.to(dtype)
    report = ConversionReport(
        source=source, loaded=len(vision_state) + len(head_state), dropped={**dropped, **head_dropped}
    )
    return model.eval(), processor, report
