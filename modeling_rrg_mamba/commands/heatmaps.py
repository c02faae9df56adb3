"""Word-to-image cross-attention heatmaps (RRG-Mamba paper, Fig. 3).

For a generated report, the decoder is run once more on the generated words (teacher forcing, so beam search does
not have to be traced back) with ``output_attentions=True``. The last decoder layer's cross-attention, averaged over
heads, is the attention the word's prediction paid to every encoder token; this is the layer the cross-modal
adapter's consistency loss supervises. Per view, the encoder tokens are ``[global, h*w grid]`` (see
`modeling_rrg_mamba.rrg_mamba.modeling_rrg_mamba`); the grid part is drawn over the film.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

#: Words never drawn: function words and the report's sentence separator.
NON_KEY_WORDS = frozenset(
    [
        ".",
        ",",
        ";",
        ":",
        "the",
        "a",
        "an",
        "of",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "in",
        "on",
        "at",
        "to",
        "with",
        "without",
        "for",
        "from",
        "by",
        "as",
        "this",
        "that",
        "these",
        "there",
        "here",
        "it",
        "its",
        "no",
        "not",
        "any",
        "all",
    ]
)
PANEL = 224
CAPTION = 18


def key_word_positions(words: Sequence[str], limit: int) -> list[int]:
    """Positions of the first ``limit`` distinct content words (not in `NON_KEY_WORDS`)."""
    positions, seen = [], set()
    for position, word in enumerate(words):
        if word in NON_KEY_WORDS or word in seen or not word.strip():
            continue
        seen.add(word)
        positions.append(position)
        if len(positions) == limit:
            break
    return positions


@torch.no_grad()
def word_cross_attention(model: torch.nn.Module, pixel_values: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """Cross-attention ``(B, T-1, N)`` of generated word ``sequences[:, t+1]`` over the N encoder tokens.

    ``sequences`` is ``generate()``'s output (decoder start token first). Row ``t`` is the attention of the decoder
    step whose input is ``sequences[:, t]`` and whose prediction is ``sequences[:, t+1]``.
    """
    outputs = model(pixel_values=pixel_values, decoder_input_ids=sequences, output_attentions=True, use_cache=False)
    if not outputs.cross_attentions:
        raise ValueError(
            f"{type(model).__name__}: returned no cross_attentions; heatmaps need an encoder-decoder model"
        )
    return outputs.cross_attentions[-1].mean(dim=1)[:, :-1].float()


def grid_maps(model: torch.nn.Module, attention: torch.Tensor, views: int) -> list[np.ndarray]:
    """Split one word's attention ``(N,)`` into per-view grid maps with the model's ``encoder_token_grids``."""
    return [grid.cpu().numpy() for grid in model.encoder_token_grids(attention, views)]


def colormap(values: np.ndarray) -> np.ndarray:
    """A blue-green-red ("jet"-like) colour for every value in [0, 1]: ``(..., 3)`` uint8."""
    values = np.clip(values, 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4.0 * values - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * values - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * values - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=-1) * 255).astype(np.uint8)


def overlay(film: np.ndarray, grid: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The film (``(H, W)`` in [0, 1]) resized to a panel, with the grid map upsampled and blended over it."""
    base = (
        Image.fromarray((film * 255).astype(np.uint8)).convert("RGB").resize((PANEL, PANEL), Image.Resampling.BILINEAR)
    )
    span = grid.max() - grid.min()
    normalised = (grid - grid.min()) / span if span > 0 else np.zeros_like(grid)
    heat = Image.fromarray((normalised * 255).astype(np.uint8)).resize((PANEL, PANEL), Image.Resampling.BILINEAR)
    coloured = Image.fromarray(colormap(np.asarray(heat, dtype=np.float32) / 255.0))
    return Image.blend(base, coloured, alpha)


def render_heatmaps(
    films: Sequence[np.ndarray], words: Sequence[str], maps: Sequence[Sequence[np.ndarray]]
) -> Image.Image:
    """One PNG-ready image: a column per key word (captioned), a row per view. ``maps[k][v]`` is word k on view v."""
    if len(words) != len(maps):
        raise ValueError(f"words/maps: {len(words)} words but {len(maps)} attention maps")
    columns = max(1, len(words))
    canvas = Image.new("RGB", (columns * PANEL, len(films) * PANEL + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    for k, word in enumerate(words):
        draw.text((k * PANEL + 4, 2), word, fill="black")
        for v, film in enumerate(films):
            canvas.paste(overlay(film, maps[k][v]), (k * PANEL, CAPTION + v * PANEL))
    return canvas


__all__ = [
    "NON_KEY_WORDS",
    "colormap",
    "grid_maps",
    "key_word_positions",
    "overlay",
    "render_heatmaps",
    "word_cross_attention",
]
