"""transformers' common model tests (``ModelTesterMixin``, ``ConfigTester``) on RRG-Mamba, written the way
``tests/models/*/test_modeling_*.py`` inside transformers are. Every skip says why it does not apply."""

from __future__ import annotations

import unittest
from unittest import mock

import pytest
import torch
from peer_suite import ConfigTester, GenerationTesterMixin, ModelTesterMixin, floats_tensor, ids_tensor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration

pytestmark = pytest.mark.peer


class RRGMambaModelTester:
    """Tiny RRG-Mamba: a 1-block-per-stage ResNet on 64 px films (a 2x2 feature grid), two views per study."""

    def __init__(self, parent, batch_size: int = 2, views: int = 2, image_size: int = 64, decoder_length: int = 7):
        self.parent = parent
        self.batch_size, self.views, self.image_size = batch_size, views, image_size
        self.seq_length = decoder_length  # decoder side
        self.encoder_seq_length = views * (1 + (image_size // 32) ** 2)  # [global + 2x2 grid] per view
        self.hidden_size, self.num_attention_heads, self.num_hidden_layers = 32, 4, 2
        self.vocab_size = 24
        self.is_training = True
        self.use_cma = True

    def get_config(self) -> RRGMambaConfig:
        return RRGMambaConfig(
            vocab_size=self.vocab_size,
            visual_extractor="resnet18",
            backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
            gdlm_preset=None,
            gdlm_dim=16,
            gdlm_depth=1,
            gdlm_d_state=4,
            gdlm_mlp_ratio=2.0,
            dpb_window=3,
            d_model=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            d_ff=64,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            dropout=0.0,
            use_cma=self.use_cma,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        pixel_values = floats_tensor([self.batch_size, self.views, 3, self.image_size, self.image_size])
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        decoder_input_ids[:, 0] = config.decoder_start_token_id
        inputs = {
            "pixel_values": pixel_values,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": torch.ones_like(decoder_input_ids),
        }
        return config, inputs


class RRGMambaModelTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (RRGMambaForConditionalGeneration,)
    is_encoder_decoder = True
    # transformers 4.57's mixin still runs head pruning / head masking (5.x removed both): neither model can prune
    # or mask attention heads, and transformers' own recent models opt out the same way.
    test_pruning = False
    test_head_masking = False
    # transformers runs this check only for files with a "# Copyright <year>" header from 2023 on; run it anyway
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = RRGMambaModelTester(self)
        self.config_tester = ConfigTester(self, config_class=RRGMambaConfig, has_text_modality=True)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """With ``return_labels`` the report targets are the decoder inputs (as for transformers' seq2seq LMs); an
        ``input_ids`` entry is the resize tests' name for the text input, which here is ``decoder_input_ids``."""
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        inputs.pop("input_ids", None)
        if return_labels:
            inputs["labels"] = inputs["decoder_input_ids"].clone()
        return inputs

    def _run_with_text_input_as_input_ids(self, test) -> None:
        """Run a common resize test, which writes new token ids into ``inputs_dict["input_ids"]``: it gets the
        ``decoder_input_ids`` tensor itself under that name, so the ids it writes reach the decoder."""
        prepare = self.model_tester.prepare_config_and_inputs_for_common

        def prepare_with_input_ids():
            config, inputs = prepare()
            inputs["input_ids"] = inputs["decoder_input_ids"]
            return config, inputs

        with mock.patch.object(self.model_tester, "prepare_config_and_inputs_for_common", prepare_with_input_ids):
            test()

    def test_resize_tokens_embeddings(self):
        self._run_with_text_input_as_input_ids(super().test_resize_tokens_embeddings)

    def test_resize_embeddings_untied(self):
        self._run_with_text_input_as_input_ids(super().test_resize_embeddings_untied)

    def test_config(self):
        self.config_tester.run_common_tests()

    if hasattr(ModelTesterMixin, "test_encoder_decoder_loss_no_double_shift"):

        def test_encoder_decoder_loss_no_double_shift(self):
            """transformers picks the heads to check from its own name mappings; RRG-Mamba's is image-text-to-text."""
            names = {"rrg_mamba": "RRGMambaForConditionalGeneration"}
            with mock.patch.dict(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, names):
                super().test_encoder_decoder_loss_no_double_shift()

    @unittest.skip(
        "RRG-Mamba, like transformers' VisionEncoderDecoderModel, has no separate base model: the encoder, decoder, "
        "adapter and LM head form one generator, so model.base_model is the model itself. A Bart-style "
        "RRGMambaModel would move every saved key under its prefix (encoder.* -> model.encoder.*), so the checkpoints "
        "saved so far would need a key conversion to load"
    )
    def test_model_base_model_prefix(self):
        pass

    def test_attention_outputs(self):
        """The common test counts the fields of a plain Seq2SeqLMOutput; the cross-modal adapter adds
        ``observation_logits``, so the attention checks run on the ablation without it (same attention stacks)."""
        self.model_tester.use_cma = False
        super().test_attention_outputs()
