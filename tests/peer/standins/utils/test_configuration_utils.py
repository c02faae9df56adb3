"""Stand-in for transformers' ``tests/utils/test_configuration_utils.py`` (not in its source distribution).

``ConfigTester.create_and_test_config_common_properties`` builds a config with ``config_common_kwargs`` and checks
that every one of them is kept. These are attributes every ``PretrainedConfig`` accepts, each set to a value other
than its default, written here from the ``PretrainedConfig`` documentation.
"""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "chunk_size_feed_forward": 5,
    "is_encoder_decoder": True,
    "tie_word_embeddings": False,
    "architectures": ["BertModel"],
    "finetuning_task": "translation",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
    "bos_token_id": 2,
    "pad_token_id": 3,
    "eos_token_id": 4,
    "sep_token_id": 5,
    "decoder_start_token_id": 6,
    "task_specific_params": {"translation": "some_params"},
}
