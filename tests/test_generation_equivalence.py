"""Generation is right on the installed transformers release, for both models.

Greedy and beam search (3 beams) must give the same ids with the cache, without it, and from a decode written out
here that runs one full-sequence ``forward`` (no cache) per step. The last two tests check that this property has
teeth: a model whose ``forward`` drops the cache that ``generate()`` hands it (what happened when transformers 5.24
renamed ``past_key_values`` to ``cache``) fails it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conftest import IMAGE_TOKEN_ID, randomize_gates, tiny_emrrg_config
from conftest import rrg_mamba_images as images
from conftest import tiny_rrg_mamba as tiny_model

from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration

Tensor = torch.Tensor
NEW_TOKENS = 6
PAD = 0


def reference_decode(
    next_logits: Callable[[Tensor], Tensor], prefix: Tensor, num_beams: int, banned: list[int]
) -> Tensor:
    """Greedy (1 beam) or beam search over ``NEW_TOKENS`` steps, each step one full-sequence forward.

    ``next_logits(sequences)`` gives the last position's logits of every row (rows are study-major, beam-minor).
    ``banned`` tokens (``<eos>``, suppressed ids) get a score of -inf after the log-softmax, as transformers'
    logits processors do, so every hypothesis runs all steps; the best-scoring beam is returned.
    """
    batch = prefix.shape[0]
    sequences = prefix.repeat_interleave(num_beams, dim=0)
    beam_scores = torch.full((batch, num_beams), float("-inf"))
    beam_scores[:, 0] = 0.0  # all beams start as copies of one hypothesis: only the first may expand at step 1
    for _ in range(NEW_TOKENS):
        log_probs = torch.log_softmax(next_logits(sequences).float(), dim=-1)
        log_probs[:, banned] = float("-inf")
        vocab = log_probs.shape[-1]
        candidates = (beam_scores.reshape(-1, 1) + log_probs).reshape(batch, num_beams * vocab)
        beam_scores, flat = candidates.topk(num_beams, dim=-1)
        source = (flat // vocab) + torch.arange(batch)[:, None] * num_beams
        sequences = torch.cat([sequences[source.reshape(-1)], (flat % vocab).reshape(-1, 1)], dim=-1)
    return sequences.reshape(batch, num_beams, -1)[:, 0]


# ----------------------------------------------------------------------------------------------------------------
# RRG-Mamba: encoder-decoder, multi-view studies
# ----------------------------------------------------------------------------------------------------------------


def rrg_mamba_case():
    # wide initialisation: the tiny decoder's next word then depends on its history (at 0.02 it repeats one word)
    model = tiny_model(seed=3, initializer_range=1.0)
    pixel_values = images(batch=2, views=2, seed=4)
    eos = model.config.eos_token_id
    settings = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=eos)
    return model, pixel_values, eos, settings


def rrg_mamba_reference(model, pixel_values: Tensor, num_beams: int, eos: int) -> Tensor:
    def next_logits(sequences: Tensor) -> Tensor:
        repeated = pixel_values.repeat_interleave(num_beams, dim=0)
        with torch.no_grad():
            return model(pixel_values=repeated, decoder_input_ids=sequences, use_cache=False).logits[:, -1]

    start = torch.full((pixel_values.shape[0], 1), model.config.decoder_start_token_id)
    return reference_decode(next_logits, start, num_beams, banned=[eos])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_rrg_mamba_generate_equals_step_by_step_full_forward(num_beams):
    model, pixel_values, eos, settings = rrg_mamba_case()
    expected = rrg_mamba_reference(model, pixel_values, num_beams, eos)
    for use_cache in (True, False):
        generated = model.generate(pixel_values=pixel_values, num_beams=num_beams, use_cache=use_cache, **settings)
        assert torch.equal(generated, expected), f"use_cache={use_cache}, num_beams={num_beams}"


# ----------------------------------------------------------------------------------------------------------------
# EMRRG: decoder-only LLM, a batch of prompts of different lengths (left padding), two views per study
# ----------------------------------------------------------------------------------------------------------------


def emrrg_case(family: str, fusion: str = "concat"):
    torch.manual_seed(5)
    config = tiny_emrrg_config(family, multi_view_fusion=fusion)
    model = EMRRGForConditionalGeneration(config).eval()
    randomize_gates(model, scale=2.0)  # open gates: the images matter at every hybrid layer
    # two views per study: concatenated, each view has its placeholders; averaged (the default), one view's worth
    images_per_study = config.num_image_tokens * (2 if fusion == "concat" else 1)
    prompts = [
        [3] + [IMAGE_TOKEN_ID] * images_per_study + [4, 5],
        [3, 7] + [IMAGE_TOKEN_ID] * images_per_study + [4, 5, 6, 8],
    ]
    longest = max(map(len, prompts))
    input_ids = torch.tensor([[PAD] * (longest - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    pixel_values = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    eos = 2
    settings = dict(
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=eos, pad_token_id=PAD
    )
    return model, input_ids, attention_mask, pixel_values, eos, settings


def emrrg_reference(model, input_ids, attention_mask, pixel_values, num_beams: int, eos: int) -> Tensor:
    prompt_length = input_ids.shape[1]
    mask_rows = attention_mask.repeat_interleave(num_beams, dim=0)
    repeated = pixel_values.repeat_interleave(num_beams, dim=0)

    def next_logits(sequences: Tensor) -> Tensor:
        generated = sequences.shape[1] - prompt_length
        mask = torch.cat([mask_rows, mask_rows.new_ones(mask_rows.shape[0], generated)], dim=1)
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # left padding: positions start at 0
        with torch.no_grad():
            return model(
                input_ids=sequences,
                pixel_values=repeated,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=False,
            ).logits[:, -1]

    banned = [eos] + list(model.generation_config.suppress_tokens or [])
    return reference_decode(next_logits, input_ids, num_beams, banned=banned)[:, prompt_length:]


@pytest.mark.parametrize("family, fusion", [("llama", "concat"), ("gpt2", "concat"), ("llama", "mean")])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_emrrg_generate_equals_step_by_step_full_forward(family, fusion, num_beams):
    model, input_ids, attention_mask, pixel_values, eos, settings = emrrg_case(family, fusion)
    expected = emrrg_reference(model, input_ids, attention_mask, pixel_values, num_beams, eos)
    for use_cache in (True, False):
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            num_beams=num_beams,
            use_cache=use_cache,
            **settings,
        )
        assert torch.equal(generated[:, input_ids.shape[1] :], expected), (
            f"use_cache={use_cache}, num_beams={num_beams}"
        )


# ----------------------------------------------------------------------------------------------------------------
# The property has teeth: a forward that ignores the cache generate() passes fails it
# ----------------------------------------------------------------------------------------------------------------

CACHE_KWARGS = ("cache", "past_key_values", "cache_params")


def drop_the_cache(model, monkeypatch) -> None:
    """Make ``model.forward`` ignore whatever cache it is given, as a model reading the wrong kwarg name would."""
    forward = model.forward

    def forgetful_forward(*args, **kwargs):
        for name in CACHE_KWARGS:
            kwargs.pop(name, None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forgetful_forward)


def test_rrg_mamba_property_fails_when_the_cache_is_ignored(monkeypatch):
    model, pixel_values, eos, settings = rrg_mamba_case()
    expected = rrg_mamba_reference(model, pixel_values, 1, eos)
    drop_the_cache(model, monkeypatch)
    assert not torch.equal(model.generate(pixel_values=pixel_values, use_cache=True, **settings), expected)


def test_emrrg_property_fails_when_the_cache_is_ignored(monkeypatch):
    model, input_ids, attention_mask, pixel_values, eos, settings = emrrg_case("llama")
    expected = emrrg_reference(model, input_ids, attention_mask, pixel_values, 1, eos)
    drop_the_cache(model, monkeypatch)
    try:
        generated = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, use_cache=True, **settings
        )
    except ValueError as error:  # without its cache a hybrid layer finds no visual keys/values after prefill
        assert "pixel_values" in str(error)
        return
    assert not torch.equal(generated[:, input_ids.shape[1] :], expected)
