"""transformers' common model tests on EMRRG with other LLM families and sizes than ``test_emrrg_common.py``: a GPT-2
(fused ``c_attn``, learned positions) and a wider Llama with every second layer hybrid, two-view films."""

from __future__ import annotations

import pytest
import test_emrrg_common
from peer_suite import ConfigTester

from modeling_rrg_mamba.emrrg import EMRRGConfig

pytestmark = pytest.mark.peer

TEXT_CONFIGS = {
    "gpt2": dict(
        model_type="gpt2",
        n_embd=24,
        n_layer=2,
        n_head=3,
        n_positions=64,
        vocab_size=53,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "llama": dict(
        model_type="llama",
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=3,
        vocab_size=71,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


class EMRRGFamilyTester(test_emrrg_common.EMRRGModelTester):
    """EMRRG on 48 px films (3x3 patches + class token = 10 visual tokens per view) and the ``family`` LLM."""

    def __init__(self, parent, family: str, batch_size: int = 3, text_length: int = 4, hybrid_layer_interval: int = 1):
        self.parent, self.family, self.batch_size, self.text_length = parent, family, batch_size, text_length
        self.hybrid_layer_interval = hybrid_layer_interval
        self.image_size = 48
        self.vision_config = dict(hidden_size=12, num_hidden_layers=2, image_size=48, patch_size=16, d_state=3)
        text = TEXT_CONFIGS[family]
        self.vocab_size = text["vocab_size"]
        self.num_hidden_layers = text.get("n_layer", text.get("num_hidden_layers"))
        self.hidden_size = text.get("n_embd", text.get("hidden_size"))
        self.num_attention_heads = text.get("n_head", text.get("num_attention_heads"))
        self.is_training = True

    def get_config(self) -> EMRRGConfig:
        return EMRRGConfig(
            text_config=dict(TEXT_CONFIGS[self.family]),
            vision_config=self.vision_config,
            image_token_id=test_emrrg_common.IMAGE_TOKEN_ID,
            hybrid_layer_interval=self.hybrid_layer_interval,
        )

    @property
    def seq_length(self) -> int:
        return 1 + self.num_image_tokens + self.text_length

    @property
    def num_image_tokens(self) -> int:
        return self.get_config().num_image_tokens


class EMRRGFamilyTestMixin(test_emrrg_common.EMRRGModelTest):
    """``test_emrrg_common.py``'s test case (its documented opt-outs) on :class:`EMRRGFamilyTester`."""

    __test__ = False  # run through the concrete classes below
    family = "llama"
    hybrid_layer_interval = 1

    def setUp(self):
        self.model_tester = EMRRGFamilyTester(self, self.family, hybrid_layer_interval=self.hybrid_layer_interval)
        self.config_tester = ConfigTester(self, config_class=EMRRGConfig, has_text_modality=False)


class EMRRGGPT2ModelTest(EMRRGFamilyTestMixin):
    __test__ = True
    family = "gpt2"


class EMRRGLlamaModelTest(EMRRGFamilyTestMixin):
    __test__ = True
    family = "llama"
    hybrid_layer_interval = 2
