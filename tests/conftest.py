"""Shared test set-up: the tiny random models, processors and synthetic films the test files share, and pytest
configuration.

The pytest markers that transformers' common tests (``tests/peer/``) use are registered here: transformers' own
conftest.py, which declares them, is not in its source distribution. They are read off the installed release's files,
so a marker a new release adds is registered too and ``--strict-markers`` keeps catching typos in our own tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    # Without a GPU the package's Triton kernels run under Triton's interpreter (tests/test_ops_triton.py). Triton
    # reads this when a kernel module is imported, so it is set before anything imports one.
    os.environ.setdefault("TRITON_INTERPRET", "1")
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration
from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration

_MARKER = re.compile(r"\bmark\.([A-Za-z_][A-Za-z0-9_]*)")
_BUILTIN_MARKERS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


def _peer_marker_names() -> set[str]:
    """Marker names used in transformers' testing utilities and the fetched common tests (read, not imported)."""
    testing_utils = importlib.util.find_spec("transformers.testing_utils")
    sources = [Path(testing_utils.origin)] if testing_utils and testing_utils.origin else []
    sources += (Path(sys.prefix) / "transformers-common-tests").rglob("test_*common*.py")
    return {name for source in sources for name in _MARKER.findall(source.read_text(encoding="utf-8"))}


def pytest_configure(config) -> None:
    for name in sorted(_peer_marker_names() - _BUILTIN_MARKERS):
        config.addinivalue_line("markers", f"{name}: used by transformers' common tests")


# ----------------------------------------------------------------------------------------------------------------
# RRG-Mamba: a 1-block-per-stage ResNet on 64 px films (a 2x2 grid), one GDLM block, a 1+2-layer encoder-decoder
# ----------------------------------------------------------------------------------------------------------------

GRID = 2  # 64 px images through a stride-32 ResNet -> 2 x 2 feature map


def tiny_rrg_mamba_config(**overrides):
    settings = dict(
        vocab_size=24,
        visual_extractor="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
        gdlm_preset=None,
        gdlm_dim=16,
        gdlm_depth=1,
        gdlm_d_state=4,
        gdlm_mlp_ratio=2.0,
        dpb_window=3,
        d_model=32,
        num_attention_heads=4,
        d_ff=64,
        encoder_layers=1,
        decoder_layers=2,
        dropout=0.0,
    )
    settings.update(overrides)
    return RRGMambaConfig(**settings)


def tiny_rrg_mamba(seed=0, **overrides):
    torch.manual_seed(seed)
    return RRGMambaForConditionalGeneration(tiny_rrg_mamba_config(**overrides)).eval()


def rrg_mamba_images(batch=2, views=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, 64, 64, generator=generator)


RRG_MAMBA_LABELS = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, -100, -100]])

#: The smallest RRG-Mamba (timm's test ResNet, one layer each) for saving, cards and exports: only shapes matter.
SMALLEST_RRG_MAMBA = dict(
    vocab_size=20,
    visual_extractor="test_resnet",
    gdlm_preset=None,
    gdlm_dim=16,
    gdlm_depth=1,
    gdlm_d_state=4,
    d_model=16,
    encoder_layers=1,
    decoder_layers=1,
    num_attention_heads=2,
    d_ff=32,
    max_position_embeddings=64,
)

#: The bundled demo films and annotation (read from the package folder, so that no test imports the demo command).
DEMO_DATA = Path(__file__).resolve().parents[1] / "modeling_rrg_mamba" / "demo_data"
#: A small RRG-Mamba for the command-line and training runs on the demo films (``--config_overrides``).
TRAIN_CONFIG = {
    "visual_extractor": "resnet18",
    "backbone_kwargs": {"layers": [1, 1, 1, 1]},
    "gdlm_preset": None,
    "gdlm_dim": 32,
    "gdlm_depth": 1,
    "d_model": 32,
    "d_ff": 64,
    "num_attention_heads": 2,
    "encoder_layers": 1,
    "decoder_layers": 1,
}


def save_demo_model(path: Path) -> Path:
    """A random :data:`TRAIN_CONFIG` RRG-Mamba with a processor whose vocabulary is the demo reports', saved to
    ``path`` the way ``rrg-mamba train`` saves a model."""
    import json

    from modeling_rrg_mamba.rrg_mamba import RRGMambaImageProcessor, RRGMambaProcessor, RRGMambaTokenizer

    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    tokenizer = RRGMambaTokenizer.from_reports([e["report"] for e in annotation["train"]], threshold=1)
    processor = RRGMambaProcessor(RRGMambaImageProcessor(size=72, crop_size=64), tokenizer, max_length=16)
    torch.manual_seed(0)
    model = RRGMambaForConditionalGeneration(RRGMambaConfig(vocab_size=len(tokenizer), **TRAIN_CONFIG))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# EMRRG: a one-layer X-ray Mamba on 32 px films and two-layer LLMs of four families
# ----------------------------------------------------------------------------------------------------------------

IMAGE_TOKEN_ID = 60


# Llama, Qwen2 and Mistral share one tiny shape; GPT-2 names its sizes differently.
_LLAMA_LIKE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=60,
)
TEXT_CONFIGS = {
    "llama": dict(model_type="llama", **_LLAMA_LIKE),
    "qwen2": dict(model_type="qwen2", **_LLAMA_LIKE),
    "mistral": dict(model_type="mistral", sliding_window=4, **_LLAMA_LIKE),
    "gpt2": dict(
        model_type="gpt2",
        n_embd=32,
        n_layer=2,
        n_head=4,
        vocab_size=60,
        bos_token_id=1,
        eos_token_id=2,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
    ),
}


TINY_VISION = dict(hidden_size=16, num_hidden_layers=1, image_size=32, patch_size=16, d_state=4)


def save_tiny_llm(folder: Path) -> Path:
    """The fine-tuning example's tiny Llama (model and tokenizer) saved in ``folder``."""
    spec = importlib.util.spec_from_file_location(
        "finetune_example", Path(__file__).resolve().parents[1] / "examples" / "finetune_emrrg_partial_lora.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.save_tiny_llm(folder)


def save_tiny_emrrg(folder: Path, llm: Path, num_hidden_layers: int = 1) -> Path:
    """A tiny EMRRG over the causal LM in ``llm`` (hybrid layer at every block), with its processor, saved in
    ``folder``."""
    from transformers import AutoTokenizer

    from modeling_rrg_mamba.emrrg import EMRRGProcessor, XrayMambaConfig
    from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor

    vision = XrayMambaConfig(hidden_size=32, num_hidden_layers=num_hidden_layers, image_size=64, d_state=4)
    processor = EMRRGProcessor(
        XrayImageProcessor(size=72, crop_size=64),
        AutoTokenizer.from_pretrained(llm),
        image_seq_length=vision.num_tokens(),
    )
    torch.manual_seed(0)
    model = EMRRGForConditionalGeneration.from_vision_text_pretrained(
        vision, str(llm), image_token_id=processor.image_token_id, hybrid_layer_interval=1
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_emrrg_config(family: str = "llama", **kwargs) -> EMRRGConfig:
    """Every layer hybrid; views concatenated (the generation-equivalence test counts placeholders per view)."""
    kwargs = {"hybrid_layer_interval": 1, "multi_view_fusion": "concat", **kwargs}
    return EMRRGConfig(
        text_config=TEXT_CONFIGS[family], vision_config=TINY_VISION, image_token_id=IMAGE_TOKEN_ID, **kwargs
    )


def prompt_ids(batch: int, num_image_tokens: int, text=(4, 5, 6)) -> torch.Tensor:
    return torch.tensor([[3] + [IMAGE_TOKEN_ID] * num_image_tokens + [t + i for t in text] for i in range(batch)])


def randomize_gates(model: EMRRGForConditionalGeneration, scale: float = 0.5) -> None:
    with torch.no_grad():
        for hybrid in model.hybrid_attentions:
            hybrid.gated_cross_attn.gate.weight.normal_(0, scale)
            hybrid.gated_cross_attn.gate.bias.normal_(0, scale)


# ----------------------------------------------------------------------------------------------------------------
# A synthetic findings task for EMRRG: one bright blob per film, its quadrant named by the report
# ----------------------------------------------------------------------------------------------------------------

PROMPT = "Human: <Img>{image}</Img> describe the film . Assistant:"


ROWS, COLUMNS = ("upper", "lower"), ("left", "right")


SIDE, PATCH = 32, 8


def report(row: int, column: int) -> str:
    return f"opacity {ROWS[row]} {COLUMNS[column]} ."


def film(row: int, column: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy grey film with one bright blob in the given quadrant (jittered)."""
    image = 0.3 + 0.05 * rng.standard_normal((SIDE, SIDE))
    top = row * SIDE // 2 + rng.integers(1, SIDE // 2 - 9)
    left = column * SIDE // 2 + rng.integers(1, SIDE // 2 - 9)
    image[top : top + 8, left : left + 8] += 0.6
    return np.clip(image, 0, 1).astype(np.float32)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [PROMPT] + [report(r, c) for r in range(2) for c in range(2)]
    tokenizer.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"])
    )
    bos = tokenizer.token_to_id("[BOS]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )


# ----------------------------------------------------------------------------------------------------------------
# Films and scan references
# ----------------------------------------------------------------------------------------------------------------


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence written out one time step at a time (Mamba's Alg. 2), with autograd through the loop."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    if B.ndim == 3:
        B, C = B[:, None], C[:, None]
    B = B.repeat_interleave(dim // B.shape[1], dim=1)
    C = C.repeat_interleave(dim // C.shape[1], dim=1)
    state = u.new_zeros(batch, dim, A.shape[1])
    outputs = []
    for t in range(length):
        state = torch.exp(delta[:, :, t, None] * A) * state + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        outputs.append((state * C[..., t]).sum(-1))
    y = torch.stack(outputs, dim=-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, state


def make_inputs(batch=2, dim=6, d_state=4, length=11, groups=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    bc_shape = (batch, d_state, length) if groups is None else (batch, groups, d_state, length)
    return dict(
        u=torch.randn(batch, dim, length, generator=g, dtype=dtype),
        delta=torch.rand(batch, dim, length, generator=g, dtype=dtype) * 0.6 - 0.1,
        A=-torch.rand(dim, d_state, generator=g, dtype=dtype) * 2 - 0.1,
        B=torch.randn(*bc_shape, generator=g, dtype=dtype),
        C=torch.randn(*bc_shape, generator=g, dtype=dtype),
        D=torch.randn(dim, generator=g, dtype=dtype),
        z=torch.randn(batch, dim, length, generator=g, dtype=dtype),
        delta_bias=torch.randn(dim, generator=g, dtype=dtype) * 0.3,
    )


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm().clamp_min(1e-30)).item()
