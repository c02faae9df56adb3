"""Configuration of RRG-Mamba (Hou et al., "RRG-Mamba: Efficient Radiology Report Generation with State Space
Model", IJCAI 2025)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

#: GDLM presets. The paper gives GDLM-T/S/B no widths; its code base descends from MLLA (T: width 64, depths
#: [2, 4, 8, 4]; S: 64, [3, 6, 21, 6]; B: 96, [3, 6, 21, 6]). Each preset takes the width (4 x the base width) and
#: depth of MLLA's third stage, its 14 x 14 (stride-16) stage, the one nearest the 7 x 7 DenseNet-121 map
#: (T: 256 x 8; S: 256 x 21; B: 384 x 21). The MLP ratio is the one value fitted: with 3 (MLLA: 4) the paper's
#: model, DenseNet-121 + GDLM-B + CMA + R2Gen-size encoder-decoder with IU X-Ray's 763-word vocabulary, has
#: 66.12 M parameters, 0.7 % under the 66.56 M of the paper's Table 3 (MLP ratio 4 would give 70.6 M, +6 %;
#: the previous presets, MLLA's fourth stage 768 x 6, gave 77.89 M, +17 %). Counted on the meta device,
#: tests/test_rrg_mamba_modeling.py::test_default_parameter_count_matches_paper.
GDLM_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"gdlm_dim": 256, "gdlm_depth": 8, "gdlm_mlp_ratio": 3.0},
    "small": {"gdlm_dim": 256, "gdlm_depth": 21, "gdlm_mlp_ratio": 3.0},
    "base": {"gdlm_dim": 384, "gdlm_depth": 21, "gdlm_mlp_ratio": 3.0},
}
#: Paper Table 3: trainable parameters of RRG-Mamba with DenseNet-121 (the default configuration).
PAPER_PARAMETERS = 66.56e6

NUM_OBSERVATIONS = 14  # the CheXpert observations


class RRGMambaConfig(PretrainedConfig):
    r"""
    Configuration of [`RRGMambaForConditionalGeneration`]. The defaults give the paper's best model:
    DenseNet-121 visual extractor, GDLM-base, cross-modal adapter, R2Gen-size encoder-decoder (66.12 M parameters
    with the default vocabulary; paper Table 3: 66.56 M; see `GDLM_PRESETS` for how the presets were derived).

    Args:
        vocab_size (`int`, defaults to 763):
            Size of the word-level report vocabulary, special tokens included (IU X-Ray, threshold 3:
            759 words + `<unk>` + `<pad>`, `<bos>`, `<eos>`).
        visual_extractor (`str`, defaults to `"densenet121"`):
            Name of the timm model that extracts the per-view feature map v (paper: `densenet121`, `resnet101`,
            `vit_base_patch16_224`, `vit_base_patch32_224`; any timm name works).
        pretrained_backbone (`bool`, defaults to `False`):
            Load timm's ImageNet weights for the visual extractor when the model is built from this config
            (downloads them). The model resets the flag once the backbone exists, so a saved config never
            downloads again: `from_pretrained` uses the saved weights.
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model` (e.g. `{"layers": [1, 1, 1, 1]}` for a small ResNet).
        gdlm_preset (`str`, *optional*, defaults to `"base"`):
            `"tiny"`, `"small"` or `"base"`: fills `gdlm_dim`, `gdlm_depth` and `gdlm_mlp_ratio` where they are not
            given (see `GDLM_PRESETS`). Set it to `None` to give `gdlm_dim` / `gdlm_depth` directly.
        gdlm_dim (`int`, *optional*):
            Width of v_S and of the GDLM blocks.
        gdlm_depth (`int`, *optional*):
            Number of GDLM blocks.
        gdlm_d_state (`int`, defaults to 16): SSM state size of SS2D.
        gdlm_expand (`int`, defaults to 2): inner-width factor of SS2D.
        gdlm_d_conv (`int`, defaults to 3): kernel of SS2D's depthwise convolution and of the block's v_con
            convolution.
        gdlm_mlp_ratio (`float`, *optional*): hidden-width factor of the MLP after each GDLM block (0 drops it);
            the preset's value (3.0), or 4.0 (MLLA's) without a preset.
        selective_scan_backend (`str`, *optional*): the scan path of SS2D: `"triton"` (this package's kernels, the
            GPU default), `"mamba_ssm"`, `"fused"` (the CPU default), `"reference"` or `"auto"`; unset, the process
            setting decides (``RRG_MAMBA_SELECTIVE_SCAN``). As `XrayMambaConfig.selective_scan_backend`.
        dpb_window (`int`, defaults to 7): largest relative offset the dynamic position bias is defined for.
        use_gdlm (`bool`, defaults to `True`): run the GDLM (ablation: off feeds v_S straight to the encoder).
        use_rope (`bool`, defaults to `True`): 2-D rotary embedding inside SS2D.
        use_dpb (`bool`, defaults to `True`): dynamic position bias v_P = v_S + DPB(v_S).
        use_cma (`bool`, defaults to `True`): cross-modal adapter (observation head, foreground token,
            consistency loss and the fusion of the foreground token with the decoder state).
        num_observations (`int`, defaults to 14): classes of the observation head (CheXpert observations).
        visual_position_scale (`float`, defaults to 0.0): scale of the sinusoidal positions added to the encoder's
            visual tokens (R2Gen adds none; at 1.0 they outweigh the image-dependent part of the tokens tenfold at
            initialisation, issue 24).
        word_ratio (`float`, defaults to 0.5): the word identification ratio k of the consistency loss.
        observation_loss_weight (`float`, defaults to 1.0): weight of the observation BCE term in the loss. The
            paper's Eq. 18 is the report cross-entropy alone; the authors' IU X-Ray script (CAMANet lineage,
            `run_iu.sh`) adds the classification term with `--cls_w 1`.
        consistency_loss_weight (`float`, defaults to 0.15): weight of the attention-consistency MSE term (the
            authors' script: `--mse_w 0.15`).
        d_model (`int`, defaults to 512): width of the report encoder-decoder.
        encoder_layers (`int`, defaults to 3): Transformer encoder layers.
        decoder_layers (`int`, defaults to 3): Transformer decoder layers.
        num_attention_heads (`int`, defaults to 8): heads of every attention.
        d_ff (`int`, defaults to 512): feed-forward width of the encoder-decoder.
        dropout (`float`, defaults to 0.1): dropout of the encoder-decoder and of the visual projections.
        max_position_embeddings (`int`, defaults to 1024): longest encoder or decoder sequence of the sinusoidal
            position table.
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of every LayerNorm.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of linear layers.
        use_cache (`bool`, defaults to `True`): return the decoder's key/value cache when not training on labels.
        generation_num_beams (`int`, defaults to 3): beam width of the model's default generation config (paper
            Sec. 4.2: beam 3), so `generate()` and every saved `generation_config.json` decode as the paper does.
        generation_max_length (`int`, defaults to 60): longest generated report in tokens, `<eos>` included, as
            [`RRGMambaProcessor`]'s `max_length` counts them (paper: 60 IU X-Ray, 100 MIMIC-CXR): the default
            generation config's `max_new_tokens` (a `max_length` passed to `generate()` replaces it).
        pad_token_id / bos_token_id / eos_token_id / decoder_start_token_id (`int`): ids of the special tokens of
            [`RRGMambaTokenizer`] (the decoder starts from `<bos>`).
        tie_word_embeddings (`bool`, defaults to `False`): R2Gen's output layer has its own weight and bias, so it is
            not tied to the decoder's word embedding (transformers 4.57 would tie them by default).
    """

    model_type = "rrg_mamba"
    attribute_map = {"num_hidden_layers": "decoder_layers", "hidden_size": "d_model"}

    def __init__(
        self,
        vocab_size: int = 763,
        visual_extractor: str = "densenet121",
        pretrained_backbone: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
        gdlm_preset: str | None = "base",
        gdlm_dim: int | None = None,
        gdlm_depth: int | None = None,
        gdlm_d_state: int = 16,
        gdlm_expand: int = 2,
        gdlm_d_conv: int = 3,
        gdlm_mlp_ratio: float | None = None,
        selective_scan_backend: str | None = None,
        dpb_window: int = 7,
        use_gdlm: bool = True,
        use_rope: bool = True,
        use_dpb: bool = True,
        use_cma: bool = True,
        num_observations: int = NUM_OBSERVATIONS,
        word_ratio: float = 0.5,
        visual_position_scale: float = 0.0,
        observation_loss_weight: float = 1.0,
        consistency_loss_weight: float = 0.15,
        d_model: int = 512,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        num_attention_heads: int = 8,
        d_ff: int = 512,
        dropout: float = 0.1,
        max_position_embeddings: int = 1024,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        generation_num_beams: int = 3,
        generation_max_length: int = 60,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 1,
        is_encoder_decoder: bool = True,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        if gdlm_preset is not None:
            if gdlm_preset not in GDLM_PRESETS:
                raise ValueError(f"gdlm_preset: unknown preset {gdlm_preset!r}; choose from {sorted(GDLM_PRESETS)}")
            preset = GDLM_PRESETS[gdlm_preset]
            gdlm_dim = preset["gdlm_dim"] if gdlm_dim is None else gdlm_dim
            gdlm_depth = preset["gdlm_depth"] if gdlm_depth is None else gdlm_depth
            gdlm_mlp_ratio = preset["gdlm_mlp_ratio"] if gdlm_mlp_ratio is None else gdlm_mlp_ratio
        if gdlm_mlp_ratio is None:
            gdlm_mlp_ratio = 4.0
        if gdlm_dim is None or gdlm_depth is None:
            raise ValueError("gdlm_dim and gdlm_depth: give both, or a gdlm_preset")
        if d_model % num_attention_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_attention_heads ({num_attention_heads})")
        if generation_num_beams < 1 or generation_max_length < 1:
            raise ValueError(
                f"generation_num_beams / generation_max_length: expected positive integers, got "
                f"{generation_num_beams} / {generation_max_length}"
            )
        if not 0.0 < word_ratio <= 1.0:
            raise ValueError(f"word_ratio: expected a value in (0, 1], got {word_ratio}")
        if visual_position_scale < 0:
            raise ValueError(f"visual_position_scale: expected a value >= 0, got {visual_position_scale}")
        self.vocab_size = vocab_size
        self.visual_extractor = visual_extractor
        self.pretrained_backbone = pretrained_backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.gdlm_preset = gdlm_preset
        self.gdlm_dim = gdlm_dim
        self.gdlm_depth = gdlm_depth
        self.gdlm_d_state = gdlm_d_state
        self.gdlm_expand = gdlm_expand
        self.gdlm_d_conv = gdlm_d_conv
        self.gdlm_mlp_ratio = gdlm_mlp_ratio
        self.selective_scan_backend = selective_scan_backend
        self.dpb_window = dpb_window
        self.use_gdlm = use_gdlm
        self.use_rope = use_rope
        self.use_dpb = use_dpb
        self.use_cma = use_cma
        self.num_observations = num_observations
        self.word_ratio = word_ratio
        self.visual_position_scale = visual_position_scale
        self.observation_loss_weight = observation_loss_weight
        self.consistency_loss_weight = consistency_loss_weight
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.num_attention_heads = num_attention_heads
        self.d_ff = d_ff
        self.dropout = dropout
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.generation_num_beams = generation_num_beams
        self.generation_max_length = generation_max_length
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


__all__ = ["RRGMambaConfig", "GDLM_PRESETS", "PAPER_PARAMETERS"]
