"""Report generation throughput: RRG-Mamba vs transformers' VisionEncoderDecoderModel, same run, same decoder size.

Both models are randomly initialised (no download): RRG-Mamba with its paper configuration (DenseNet-121 + GDLM,
R2Gen-size 3-layer decoder, d_model 512, 8 heads, feed-forward 512) and a VisionEncoderDecoderModel whose GPT-2
decoder has the same size (3 layers, 512 wide, 8 heads, inner 512, cross-attention) on a ViT-B/16 encoder. Each
generates with beam search (3 beams) exactly ``--tokens`` new tokens (min = max, so both do the same number of
steps), with the KV cache. Prints reports per second and the ratio (goal: RRG-Mamba not slower).

It also times RRG-Mamba's own attention implementations on the same weights: ``sdpa`` (the default,
`torch.nn.functional.scaled_dot_product_attention`) against ``eager`` (the explicit softmax that attention maps
need), and prints the speed-up sdpa / eager (measured, issue 13, one thread on a shared 2-core machine: 1.02x at
batch 4 / 60 tokens (1.96 -> 2.00 reports/s), 1.17x at batch 2 / 40 tokens; the decoder's sequences are short and
the encoder, run once per report and the same in both, dominates).

    python benchmarks/bench_rrg_generation.py [--batch 4] [--tokens 60] [--repeats 2] [--gdlm-preset base]
        [--attention-only]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration

VOCAB = 763  # IU X-Ray vocabulary at threshold 3 plus <pad>/<bos>/<eos>


def vision_encoder_decoder(config: RRGMambaConfig) -> VisionEncoderDecoderModel:
    decoder = GPT2Config(
        vocab_size=VOCAB,
        n_embd=config.d_model,
        n_layer=config.decoder_layers,
        n_head=config.num_attention_heads,
        n_inner=config.d_ff,
        add_cross_attention=True,
        is_decoder=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = VisionEncoderDecoderModel(encoder=ViTModel(ViTConfig()), decoder=GPT2LMHeadModel(decoder))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    return model.eval()


def reports_per_second(model, pixel_values: torch.Tensor, tokens: int, repeats: int) -> float:
    settings = dict(num_beams=3, max_new_tokens=tokens, min_new_tokens=tokens, use_cache=True)
    with torch.no_grad():
        model.generate(pixel_values[:1], **settings)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(pixel_values, **settings)
            best = min(best, time.perf_counter() - start)
    return pixel_values.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gdlm-preset", default="base", choices=["tiny", "small", "base"])
    parser.add_argument("--attention-only", action="store_true", help="Only compare RRG-Mamba's sdpa and eager.")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = RRGMambaConfig(vocab_size=VOCAB, gdlm_preset=args.gdlm_preset)
    rrg = RRGMambaForConditionalGeneration(config).eval()
    pixel_values = torch.randn(args.batch, 3, 224, 224)
    print(f"batch {args.batch}, beam 3, {args.tokens} new tokens, {torch.get_num_threads()} threads")
    speeds = {}
    for implementation in ("eager", "sdpa"):
        rrg.config._attn_implementation = implementation
        speeds[implementation] = reports_per_second(rrg, pixel_values, args.tokens, args.repeats)
        print(f"RRG-Mamba attention {implementation}: {speeds[implementation]:.2f} reports/s")
    print(f"speed-up sdpa / eager: {speeds['sdpa'] / speeds['eager']:.2f}")
    if args.attention_only:
        return
    reference = vision_encoder_decoder(config)
    rrg_speed = speeds["sdpa"]
    reference_speed = reports_per_second(reference, pixel_values, args.tokens, args.repeats)
    print(f"RRG-Mamba (DenseNet-121 + GDLM-{args.gdlm_preset}): {rrg_speed:.2f} reports/s")
    print(f"VisionEncoderDecoder (ViT-B/16 + GPT-2 3x512): {reference_speed:.2f} reports/s")
    print(f"ratio RRG-Mamba / reference: {rrg_speed / reference_speed:.2f} (goal >= 1)")


if __name__ == "__main__":
    main()
