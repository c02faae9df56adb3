"""GPU benchmark: the state-space models against the attention models a user would pick instead, for every scan
path available (this package's Triton kernels, mamba-ssm's CUDA kernels, the chunked PyTorch scan), in one process.

Sections (bf16 autocast, fixed seeds, CUDA-event timings, medians of ``--repeats`` after ``--warmup`` runs; peak =
``torch.cuda.max_memory_allocated`` during the timed runs, weights included):

1. ``backbone``: X-ray Mamba-B (EMRRG's vision backbone, 84 M) against timm's ViT-B/16 (86 M) at 224 / 448 / 640 px
   (197 / 785 / 1,601 tokens), inference and training (forward + backward), batch 64; images/s and ratios.
2. ``rrg``: RRG-Mamba (the paper's configuration: DenseNet-121 + GDLM-B, R2Gen-size encoder-decoder) against a
   ``VisionEncoderDecoderModel`` of ViT-B/16 and a 3-layer GPT-2 of the same width: a training step (forward,
   backward, AdamW) of 16 studies x 2 views, and beam-3 generation of 60 tokens for 16 studies; where RRG-Mamba's
   training time goes (DenseNet-121, GDLM, the rest).
3. ``emrrg``: one EMRRG training step under the Partial-LoRA recipe: X-ray Mamba-B and a 1.1 B Llama-shape LLM
   (TinyLlama's shape), batch 8, 298 tokens (BOS, 197 image tokens, 100 text tokens).
4. ``scan``: the selective scan alone (batch 128, dim 768, L 197, N 16), forward and forward + backward, against its
   memory floor (the bytes it must read and write once, at the copy bandwidth measured here); one X-ray Mamba-B mixer
   (four routes, batch 64) forward + backward against its floor (its GEMMs at the bf16 matmul rate measured here,
   plus the element-wise tensors each pass must read or write once, at the measured bandwidth).

The goals of issue 23 are checked at the end (X-ray Mamba-B training at least ViT-B/16's images/s and inference
within 1.2x its time, faster at 1,601 tokens; the mixer within 3x its floor; RRG-Mamba training at least half the
peer's images/s; without Triton and mamba-ssm a peak of at most 1.5x ViT-B/16's).

    python benchmarks/bench_gpu.py [--sections backbone rrg emrrg scan] [--paths triton mamba_ssm reference]
        [--repeats 10] [--output bench_gpu.json]
    python benchmarks/bench_gpu.py --smoke --device cpu      # tiny sizes: checks the script itself, no GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, VisionEncoderDecoderModel, ViTConfig, ViTModel

from modeling_rrg_mamba.emrrg import (
    EMRRGConfig,
    EMRRGForConditionalGeneration,
    XrayMambaConfig,
    XrayMambaModel,
    apply_emrrg_recipe,
)
from modeling_rrg_mamba.layers import MambaMixer
from modeling_rrg_mamba.ops import (
    GRID_DIRECTIONS,
    mamba_ssm_kernels,
    selective_scan,
    set_selective_scan_backend,
    triton_kernels,
)
from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration

VOCAB = 763  # IU X-Ray vocabulary at threshold 3 plus <pad>/<bos>/<eos>
GIB = 2**30


@dataclass
class Sizes:
    """Every size the sections use: the issue's (``full``) or tiny ones that run anywhere (``smoke``)."""

    backbone_batch: int = 64
    image_sizes: tuple[int, ...] = (224, 448, 640)
    reference_image_sizes: tuple[int, ...] = (224,)  # the PyTorch scan at higher resolutions takes minutes
    xray: dict | None = None
    vit: dict | None = None
    studies: int = 16
    report_tokens: int = 60
    rrg: dict | None = None
    peer_width: int = 512
    peer_vit: dict | None = None
    emrrg: dict | None = None
    emrrg_batch: int = 8
    emrrg_text_tokens: int = 100  # + 1 BOS + 197 image tokens = 298
    llm: dict | None = None
    scan: tuple[int, int, int, int] = (128, 768, 197, 16)  # batch, dim, L, N
    mixer_batch: int = 64
    gemm: int = 8192
    copy_gib: float = 1.0

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            xray=dict(),  # XrayMambaConfig's defaults are the paper's base backbone (768 x 12, patch 16, 224 px)
            vit=dict(),
            rrg=dict(),
            peer_vit=dict(),
            emrrg=dict(),
            llm=dict(
                hidden_size=2048,
                intermediate_size=5632,
                num_hidden_layers=22,
                num_attention_heads=32,
                num_key_value_heads=4,
                vocab_size=32000,
            ),
        )

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            backbone_batch=2,
            image_sizes=(64, 96),
            reference_image_sizes=(64,),
            xray=dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, image_size=64, d_state=4),
            vit=dict(embed_dim=32, depth=1, num_heads=2),
            studies=2,
            report_tokens=4,
            rrg=dict(
                visual_extractor="resnet18",
                backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
                gdlm_preset=None,
                gdlm_dim=16,
                gdlm_depth=1,
                gdlm_d_state=4,
                d_model=32,
                num_attention_heads=4,
                d_ff=64,
                encoder_layers=1,
                decoder_layers=1,
            ),
            peer_width=32,
            peer_vit=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            emrrg=dict(hybrid_layer_interval=1),
            emrrg_batch=2,
            emrrg_text_tokens=6,
            llm=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=64,
            ),
            scan=(2, 16, 20, 4),
            mixer_batch=2,
            gemm=256,
            copy_gib=1 / 256,
        )


@dataclass
class Row:
    """One measurement."""

    section: str
    name: str
    path: str  # the scan path, or "-" for a model without a scan
    ms: float
    items_per_second: float | None = None
    peak_gib: float | None = None
    note: str = ""


class Timer:
    """Median wall time of a callable (CUDA events on a GPU) and the peak memory it reaches."""

    def __init__(self, device: torch.device, warmup: int, repeats: int) -> None:
        self.device, self.warmup, self.repeats = device, warmup, repeats

    def __call__(self, fn: Callable[[], object]) -> tuple[float, float | None]:
        for _ in range(self.warmup):
            fn()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(self.repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                began = time.perf_counter()
                fn()
                times.append((time.perf_counter() - began) * 1e3)
        peak = torch.cuda.max_memory_allocated() / GIB if cuda else None
        return statistics.median(times), peak


def available_paths(device: torch.device, wanted: list[str]) -> list[str]:
    """The scan paths of ``wanted`` that run on ``device`` here."""
    runnable = {"reference"}
    if device.type == "cuda":
        if triton_kernels() is not None:
            runnable.add("triton")
        if mamba_ssm_kernels() is not None:
            runnable.add("mamba_ssm")
    else:
        runnable.add("fused")
    return [path for path in wanted if path in runnable]


@contextlib.contextmanager
def scan_path(path: str):
    set_selective_scan_backend(path)
    try:
        yield
    finally:
        set_selective_scan_backend(None)


class Bench:
    """Runs the sections and collects their rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        self.sizes = Sizes.smoke() if args.smoke else Sizes.full()
        self.paths = available_paths(self.device, args.paths)
        self.timer = Timer(self.device, args.warmup, args.repeats)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16)
        self.rows: list[Row] = []
        self.floors: dict[str, float] = {}

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        items = f"{row.items_per_second:,.1f}/s" if row.items_per_second else ""
        peak = f"{row.peak_gib:.2f} GiB" if row.peak_gib is not None else ""
        print(f"  {row.name:<46} {row.path:<10} {row.ms:10.3f} ms {items:>14} {peak:>10} {row.note}", flush=True)
        return row

    def seed(self) -> None:
        torch.manual_seed(0)

    def release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------------------------------------------------
    # timing helpers
    # ---------------------------------------------------------------------------------------------------------

    def inference(self, model: torch.nn.Module, images: torch.Tensor) -> Callable[[], object]:
        def run():
            with torch.no_grad(), torch.autocast(**self.autocast):
                return model(images)

        return run

    def training(self, model: torch.nn.Module, loss_of: Callable[[], torch.Tensor], step: bool) -> Callable:
        """Forward + backward (+ an AdamW step when ``step``)."""
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5) if step else None

        def run():
            with torch.autocast(**self.autocast):
                loss = loss_of()
            loss.backward()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                model.zero_grad(set_to_none=True)

        return run

    # ---------------------------------------------------------------------------------------------------------
    # 1. backbones
    # ---------------------------------------------------------------------------------------------------------

    def backbone(self) -> None:
        import timm

        sizes = self.sizes
        print(f"\n[backbone] X-ray Mamba-B vs timm ViT-B/16, images/s (batch {sizes.backbone_batch})")
        for side in sizes.image_sizes:
            self.seed()
            images = torch.randn(sizes.backbone_batch, 3, side, side, device=self.device)
            vit = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=side, **sizes.vit)
            vit = vit.to(self.device)
            self.measure_backbone(f"ViT-B/16 {side}px", vit, images, "-")
            del vit
            self.release()
            xray = XrayMambaModel(XrayMambaConfig(**sizes.xray)).to(self.device)
            for path in self.paths:
                if path == "reference" and side not in sizes.reference_image_sizes:
                    continue
                with scan_path(path):
                    self.measure_backbone(f"X-ray Mamba-B {side}px", xray, images, path)
            del xray
            self.release()

    def measure_backbone(self, name: str, model: torch.nn.Module, images: torch.Tensor, path: str) -> None:
        batch = images.shape[0]
        model.eval()
        ms, peak = self.timer(self.inference(model, images))
        self.add(Row("backbone", f"{name} inference", path, ms, batch / ms * 1e3, peak))
        model.train()

        def loss():
            out = model(images)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
            return hidden.float().square().mean()

        ms, peak = self.timer(self.training(model, loss, step=False))
        self.add(Row("backbone", f"{name} training", path, ms, batch / ms * 1e3, peak))

    # ---------------------------------------------------------------------------------------------------------
    # 2. RRG-Mamba against a ViT-B/16 + GPT-2 VisionEncoderDecoder
    # ---------------------------------------------------------------------------------------------------------

    def peer_model(self, config: RRGMambaConfig) -> VisionEncoderDecoderModel:
        decoder = GPT2Config(
            vocab_size=VOCAB,
            n_embd=self.sizes.peer_width,
            n_layer=config.decoder_layers,
            n_head=config.num_attention_heads,
            n_inner=config.d_ff,
            add_cross_attention=True,
            is_decoder=True,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        vit = ViTConfig(image_size=self.image_side(), **self.sizes.peer_vit)
        model = VisionEncoderDecoderModel(encoder=ViTModel(vit), decoder=GPT2LMHeadModel(decoder))
        model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
        return model.to(self.device)

    def image_side(self) -> int:
        return self.sizes.image_sizes[0]

    def rrg(self) -> None:
        sizes = self.sizes
        side, studies, tokens = self.image_side(), sizes.studies, sizes.report_tokens
        print(f"\n[rrg] RRG-Mamba vs ViT-B/16 + GPT-2 ({studies} studies x 2 views, {side}px)")
        self.seed()
        config = RRGMambaConfig(vocab_size=VOCAB, **sizes.rrg)
        pixel_values = torch.randn(studies, 2, 3, side, side, device=self.device)
        labels = torch.randint(3, VOCAB, (studies, tokens), device=self.device)
        self.rrg_peer(config, pixel_values, labels)
        self.release()
        self.rrg_mamba(config, pixel_values, labels)
        self.release()

    def rrg_peer(self, config: RRGMambaConfig, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        """The peer reads one image per sample: both views of a study are two samples with the study's report."""
        studies, tokens = labels.shape
        peer = self.peer_model(config).train()
        images, image_labels = pixel_values.flatten(0, 1), labels.repeat_interleave(2, dim=0)
        step = self.training(peer, lambda: peer(pixel_values=images, labels=image_labels).loss, True)
        ms, peak = self.timer(step)
        self.add(Row("rrg", "peer training step", "-", ms, 2 * studies / ms * 1e3, peak))
        peer.eval()
        ms, peak = self.timer(lambda: self.generate(peer, dict(pixel_values=images[::2]), tokens))
        self.add(Row("rrg", "peer generate (beam 3)", "-", ms, studies / ms * 1e3, peak, "reports/s"))

    def rrg_mamba(self, config: RRGMambaConfig, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        studies, tokens = labels.shape
        model = RRGMambaForConditionalGeneration(config).to(self.device)
        for path in self.paths:
            with scan_path(path):
                model.train()
                step = self.training(model, lambda: model(pixel_values=pixel_values, labels=labels).loss, True)
                total, peak = self.timer(step)
                self.add(Row("rrg", "RRG-Mamba training step", path, total, 2 * studies / total * 1e3, peak))
                self.rrg_breakdown(model, pixel_values, total, path)
                model.eval()
                ms, peak = self.timer(lambda: self.generate(model, dict(pixel_values=pixel_values), tokens))
                self.add(Row("rrg", "RRG-Mamba generate (beam 3)", path, ms, studies / ms * 1e3, peak, "reports/s"))

    def generate(self, model, inputs: dict, tokens: int):
        with torch.no_grad(), torch.autocast(**self.autocast):
            return model.generate(**inputs, num_beams=3, max_new_tokens=tokens, min_new_tokens=tokens)

    def rrg_breakdown(self, model, pixel_values: torch.Tensor, total: float, path: str) -> None:
        """Forward + backward of the visual extractor and of GDLM alone, on the inputs the model gives them."""
        images = pixel_values.flatten(0, 1)
        extractor, gdlm = model.encoder.visual_extractor, model.encoder.gdlm
        with torch.no_grad(), torch.autocast(**self.autocast):
            grid = extractor(images)
        grid = torch.randn(*grid.shape[:3], model.config.gdlm_dim, device=self.device)
        parts = {"DenseNet-121 / visual extractor": (extractor, images)}
        if gdlm is not None:
            parts["GDLM"] = (gdlm, grid)
        shares = []
        for name, (module, inputs) in parts.items():
            ms, _ = self.timer(self.training(module, lambda m=module, x=inputs: m(x).float().square().mean(), False))
            shares.append(ms)
            self.add(Row("rrg", f"  of which {name} fwd+bwd", path, ms, note=f"{100 * ms / total:.0f} % of the step"))
        rest = total - sum(shares)
        self.add(
            Row(
                "rrg",
                "  of which the rest (transformer, losses, AdamW)",
                path,
                rest,
                note=f"{100 * rest / total:.0f} % of the step",
            )
        )

    # ---------------------------------------------------------------------------------------------------------
    # 3. EMRRG
    # ---------------------------------------------------------------------------------------------------------

    def emrrg(self) -> None:
        self.emrrg_step()
        self.release()

    def emrrg_step(self) -> None:
        sizes = self.sizes
        self.seed()
        image_token = sizes.llm["vocab_size"] - 1
        config = EMRRGConfig(
            vision_config=XrayMambaConfig(**sizes.xray),
            text_config=LlamaConfig(**sizes.llm, pad_token_id=0, bos_token_id=1, eos_token_id=2),
            image_token_id=image_token,
            **sizes.emrrg,
        )
        model = EMRRGForConditionalGeneration(config).to(self.device)
        peft_model, trainable = apply_emrrg_recipe(model)
        image_tokens, batch = config.num_image_tokens, sizes.emrrg_batch
        text = torch.randint(3, image_token, (batch, sizes.emrrg_text_tokens), device=self.device)
        input_ids = torch.cat(
            [
                torch.ones(batch, 1, dtype=torch.long, device=self.device),
                torch.full((batch, image_tokens), image_token, device=self.device),
                text,
            ],
            dim=1,
        )
        labels = torch.cat([torch.full((batch, 1 + image_tokens), -100, device=self.device), text], dim=1)
        pixel_values = torch.randn(
            batch, 3, config.vision_config.image_size, config.vision_config.image_size, device=self.device
        )
        print(
            f"\n[emrrg] Partial-LoRA training step, batch {batch}, {input_ids.shape[1]} tokens, "
            f"{trainable.trainable / 1e6:.1f} M of {trainable.total / 1e6:.0f} M parameters trained"
        )
        peft_model.train()
        for path in self.paths:
            with scan_path(path):
                step = self.training(
                    peft_model,
                    lambda: peft_model(input_ids=input_ids, pixel_values=pixel_values, labels=labels).loss,
                    True,
                )
                ms, peak = self.timer(step)
                self.add(Row("emrrg", "EMRRG training step", path, ms, batch / ms * 1e3, peak))

    # ---------------------------------------------------------------------------------------------------------
    # 4. the scan and the mixer against their floors
    # ---------------------------------------------------------------------------------------------------------

    def measure_floors(self) -> None:
        """Copy bandwidth (read + write bytes per second) and bf16 matmul rate, measured here."""
        elements = int(self.sizes.copy_gib * GIB / 2)
        source = torch.randn(elements, device=self.device, dtype=torch.bfloat16)
        target = torch.empty_like(source)
        ms, _ = self.timer(lambda: target.copy_(source))
        self.floors["bandwidth_gb_s"] = 2 * source.numel() * 2 / ms / 1e6
        n = self.sizes.gemm
        a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        ms, _ = self.timer(lambda: a @ a)
        self.floors["matmul_tflop_s"] = 2 * n**3 / ms / 1e9
        print(
            f"  copy bandwidth {self.floors['bandwidth_gb_s']:,.0f} GB/s, bf16 matmul "
            f"{self.floors['matmul_tflop_s']:,.1f} TFLOP/s (measured)"
        )

    def bytes_ms(self, count: float) -> float:
        return count / self.floors["bandwidth_gb_s"] / 1e6

    def scan(self) -> None:
        print("\n[scan] selective scan and X-ray Mamba-B mixer against their floors")
        self.measure_floors()
        batch, dim, length, n = self.sizes.scan
        self.seed()
        dtype = torch.bfloat16
        u = torch.randn(batch, dim, length, device=self.device, dtype=dtype)
        tensors = dict(
            u=u,
            delta=torch.rand_like(u) * 0.1,
            A=-torch.rand(dim, n, device=self.device) - 0.5,
            B=torch.randn(batch, n, length, device=self.device, dtype=dtype),
            C=torch.randn(batch, n, length, device=self.device, dtype=dtype),
            D=torch.ones(dim, device=self.device),
            z=torch.randn_like(u),
            delta_bias=torch.zeros(dim, device=self.device),
        )
        bdl, bnl, size = batch * dim * length, batch * n * length, u.element_size()
        floor_fwd = self.bytes_ms((4 * bdl + 2 * bnl) * size)
        floor_both = floor_fwd + self.bytes_ms((7 * bdl + 4 * bnl) * size)
        shape = f"B{batch} D{dim} L{length} N{n}"
        for path in self.paths:
            leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
            ms, _ = self.timer(lambda lv=leaves, p=path: selective_scan(**lv, delta_softplus=True, backend=p))
            self.add(Row("scan", f"scan {shape} forward", path, ms, note=f"{ms / floor_fwd:.1f}x the memory floor"))

            def both(lv=leaves, p=path):
                selective_scan(**lv, delta_softplus=True, backend=p).float().sum().backward()

            ms, _ = self.timer(both)
            self.add(Row("scan", f"scan {shape} fwd+bwd", path, ms, note=f"{ms / floor_both:.1f}x the memory floor"))
        self.floors["scan_fwd_ms"], self.floors["scan_fwd_bwd_ms"] = floor_fwd, floor_both
        self.mixer()

    def mixer(self) -> None:
        xray = XrayMambaConfig(**self.sizes.xray)
        side = xray.image_size // xray.patch_size
        length, batch, width = side * side + 1, self.sizes.mixer_batch, xray.hidden_size
        self.seed()
        mixer = MambaMixer(width, d_state=xray.d_state, expand=xray.expand, directions=GRID_DIRECTIONS).to(self.device)
        x = torch.randn(batch, length, width, device=self.device, requires_grad=True)
        inner, routes, n, rank = mixer.d_inner, len(GRID_DIRECTIONS), xray.d_state, mixer.ssm.dt_rank
        tokens = batch * length
        gemm_flops = (
            3
            * 2
            * tokens
            * (width * 2 * inner + routes * inner * (rank + 2 * n) + routes * rank * inner + inner * width)
        )
        # bf16 element-wise traffic each pass must make once: in_proj output, the routes' conv outputs (written,
        # read by x_proj and the scan), dt (written, read), z, y; the backward about twice the forward's
        elementwise = 3 * 2 * tokens * (inner + 3 * routes * inner + 2 * routes * inner + 2 * inner)
        floor = gemm_flops / self.floors["matmul_tflop_s"] / 1e9 + self.bytes_ms(elementwise)
        self.floors["mixer_fwd_bwd_ms"] = floor
        for path in self.paths:
            with scan_path(path):

                def step():
                    with torch.autocast(**self.autocast):
                        out = mixer(x, grid=(side, side), cls_position=length // 2)
                    out.float().sum().backward()

                ms, peak = self.timer(step)
                self.add(
                    Row(
                        "scan",
                        f"X-ray Mamba-B mixer fwd+bwd, batch {batch}",
                        path,
                        ms,
                        peak_gib=peak,
                        note=f"{ms / floor:.1f}x its floor ({floor:.2f} ms)",
                    )
                )

    # ---------------------------------------------------------------------------------------------------------
    # goals
    # ---------------------------------------------------------------------------------------------------------

    def find(self, name: str, path: str) -> Row | None:
        return next((r for r in self.rows if r.name == name and r.path == path), None)

    def goals(self) -> list[dict]:
        """Issue 23's goals, for the fastest path measured."""
        best = next((p for p in ("triton", "mamba_ssm", "fused", "reference") if p in self.paths), None)
        checks = []

        def check(goal: str, ratio: float | None, limit: float, higher_is_better: bool) -> None:
            if ratio is None:
                return
            met = ratio >= limit if higher_is_better else ratio <= limit
            checks.append(dict(goal=goal, path=best, ratio=round(ratio, 3), limit=limit, met=met))

        def ratio(a: str, pa: str, b: str, pb: str, field: str = "ms") -> float | None:
            ra, rb = self.find(a, pa), self.find(b, pb)
            return None if ra is None or rb is None else getattr(ra, field) / getattr(rb, field)

        small, large = self.sizes.image_sizes[0], self.sizes.image_sizes[-1]
        check(
            f"X-ray Mamba-B training images/s / ViT-B/16's ({small}px)",
            ratio(f"X-ray Mamba-B {small}px training", best, f"ViT-B/16 {small}px training", "-", "items_per_second"),
            1.0,
            True,
        )
        check(
            f"X-ray Mamba-B inference time / ViT-B/16's ({small}px)",
            ratio(f"X-ray Mamba-B {small}px inference", best, f"ViT-B/16 {small}px inference", "-"),
            1.2,
            False,
        )
        check(
            f"X-ray Mamba-B inference time / ViT-B/16's ({large}px)",
            ratio(f"X-ray Mamba-B {large}px inference", best, f"ViT-B/16 {large}px inference", "-"),
            1.0,
            False,
        )
        mixer = next((r for r in self.rows if r.name.startswith("X-ray Mamba-B mixer") and r.path == best), None)
        if mixer is not None:
            check("mixer fwd+bwd / its floor", mixer.ms / self.floors["mixer_fwd_bwd_ms"], 3.0, False)
        check(
            "RRG-Mamba training images/s / the peer's",
            ratio("RRG-Mamba training step", best, "peer training step", "-", "items_per_second"),
            0.5,
            True,
        )
        reference = self.find(f"X-ray Mamba-B {small}px inference", "reference")
        vit = self.find(f"ViT-B/16 {small}px inference", "-")
        if reference is not None and vit is not None and reference.peak_gib and vit.peak_gib:
            checks.append(
                dict(
                    goal=f"peak memory without Triton and mamba-ssm / ViT-B/16's ({small}px inference)",
                    path="reference",
                    ratio=round(reference.peak_gib / vit.peak_gib, 3),
                    limit=1.5,
                    met=reference.peak_gib <= 1.5 * vit.peak_gib,
                )
            )
        return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["backbone", "rrg", "emrrg", "scan"],
        choices=["backbone", "rrg", "emrrg", "scan"],
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=["triton", "mamba_ssm", "fused", "reference"],
        help="scan paths to compare, those not installed skipped (default: triton, mamba_ssm and "
        "reference on a GPU, fused and reference on the CPU)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--output", default="bench_gpu.json", help="where to write the results as JSON")
    args = parser.parse_args()
    if args.warmup < 0 or args.repeats < 1:
        parser.error("--warmup must be >= 0 and --repeats >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here (use --smoke --device cpu to check the script)")
    if args.paths is None:
        on_gpu = args.device.startswith("cuda")
        args.paths = ["triton", "mamba_ssm", "reference"] if on_gpu else ["fused", "reference"]
    bench = Bench(args)
    device = torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else "CPU"
    print(
        f"{device}; torch {torch.__version__}; scan paths: {', '.join(bench.paths)}; bf16 autocast; "
        f"median of {args.repeats} after {args.warmup} warm-up runs"
    )
    for section in args.sections:
        getattr(bench, section)()
    goals = bench.goals()
    if goals:
        print("\n[goals]")
        for goal in goals:
            print(
                f"  {'met ' if goal['met'] else 'MISS'} {goal['goal']}: {goal['ratio']} (limit {goal['limit']}, "
                f"{goal['path']})"
            )
    result = dict(
        device=device,
        torch=torch.__version__,
        paths=bench.paths,
        smoke=args.smoke,
        floors=bench.floors,
        rows=[asdict(r) for r in bench.rows],
        goals=goals,
    )
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    print(f"\nwritten: {args.output}")


if __name__ == "__main__":
    main()
