"""transformers' common model tests on RRG-Mamba with other extractors and sizes than ``test_rrg_mamba_common.py``:
a DenseNet (the paper's extractor family) on single-view 96 px films with tied word embeddings and a narrower two-view
ResNet."""

from __future__ import annotations

import pytest
import test_rrg_mamba_common
from peer_suite import ConfigTester, floats_tensor, ids_tensor

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig

pytestmark = pytest.mark.peer

EXTRACTORS = {
    "densenet121": {"growth_rate": 4, "block_config": (1, 1, 1, 1), "bn_size": 2},
    "resnet18": {"layers": [1, 1, 1, 1], "channels": [4, 8, 16, 24], "stem_width": 4},
}


class RRGMambaExtractorTester(test_rrg_mamba_common.RRGMambaModelTester):
    """RRG-Mamba on ``extractor``: a 3x3 feature grid per view (96 px films), decoder of other width and depth."""

    def __init__(
        self,
        parent,
        extractor: str,
        views: int,
        layers: int,
        tied: bool = False,
        batch_size: int = 3,
        decoder_length: int = 5,
    ):
        super().__init__(parent, batch_size=batch_size, views=views, image_size=96, decoder_length=decoder_length)
        self.extractor, self.tied = extractor, tied
        self.hidden_size, self.num_attention_heads, self.num_hidden_layers = 24, 3, layers
        self.vocab_size = 19
        self.encoder_seq_length = views * (1 + 3**2)

    def get_config(self) -> RRGMambaConfig:
        return RRGMambaConfig(
            vocab_size=self.vocab_size,
            visual_extractor=self.extractor,
            backbone_kwargs=EXTRACTORS[self.extractor],
            gdlm_preset=None,
            gdlm_dim=8,
            gdlm_depth=2,
            gdlm_d_state=2,
            gdlm_mlp_ratio=1.5,
            dpb_window=3,
            d_model=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            d_ff=40,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            dropout=0.0,
            use_cma=self.use_cma,
            tie_word_embeddings=self.tied,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        shape = [self.batch_size, self.views, 3, self.image_size, self.image_size]
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        decoder_input_ids[:, 0] = config.decoder_start_token_id
        inputs = {
            "pixel_values": floats_tensor(shape if self.views > 1 else shape[:1] + shape[2:]),
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_input_ids.new_ones(decoder_input_ids.shape),
        }
        return config, inputs


class RRGMambaExtractorTestMixin(test_rrg_mamba_common.RRGMambaModelTest):
    """``test_rrg_mamba_common.py``'s test case (its documented opt-outs) on :class:`RRGMambaExtractorTester`."""

    __test__ = False  # run through the concrete classes below
    extractor, views, layers, tied = "resnet18", 2, 2, False

    def setUp(self):
        self.model_tester = RRGMambaExtractorTester(
            self, self.extractor, views=self.views, layers=self.layers, tied=self.tied
        )
        self.config_tester = ConfigTester(self, config_class=RRGMambaConfig, has_text_modality=True)


class RRGMambaDenseNetModelTest(RRGMambaExtractorTestMixin):
    __test__ = True
    extractor, views, layers, tied = "densenet121", 1, 2, True


class RRGMambaResNetModelTest(RRGMambaExtractorTestMixin):
    __test__ = True
    extractor, views, layers = "resnet18", 2, 2
