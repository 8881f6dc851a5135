"""Named accelerator cards for planning from a machine without them (no torch).

Peak figures are the vendors' dense (no sparsity) tensor-core numbers for
16-bit inputs with float32 accumulation, which is what torch's fp16/bf16
matmuls and convolutions use:

* H100 SXM5 80 GB: 989 TFLOPS bf16/fp16 dense (NVIDIA H100 datasheet);
* H200 SXM 141 GB: 989 TFLOPS (same GH100 compute as H100 SXM);
* A100 SXM 80 GB: 312 TFLOPS (A100 datasheet); A800 is the export variant
  with the same compute and memory (FreeScale's card);
* RTX 4090 24 GB: 165.2 TFLOPS fp16/bf16 with fp32 accumulate (Ada whitepaper;
  330 only with fp16 accumulate, which torch does not use).

Estimated seconds = FLOPs / (peak x utilisation). :data:`UTILISATION` (0.4)
is an assumption, not a measurement: large-batch transformer/UNet inference
with fused attention typically reaches 35-50 % of dense peak on these cards.
BENCHMARKS.md ("Real-size simulation") sets the resulting seconds next to
FreeScale's published time (about one hour at 8192 px on one A800).
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 2 ** 30
UTILISATION = 0.4


@dataclass(frozen=True)
class Card:
    name: str
    memory_gib: float
    peak_tflops: float  # dense 16-bit tensor-core peak

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GiB)

    def seconds(self, flops: float, utilisation: float = UTILISATION) -> float:
        """Estimated seconds for ``flops`` at ``utilisation`` of the dense peak."""
        return float(flops) / (self.peak_tflops * 1e12 * utilisation)


# Usable memory of the 80/141/24 GB cards as torch reports it (mem_get_info total), in GiB.
CARDS: dict[str, Card] = {
    "h100": Card("H100 SXM 80GB", 79.2, 989.0),
    "h200": Card("H200 SXM 141GB", 139.7, 989.0),
    "a100": Card("A100 SXM 80GB", 79.2, 312.0),
    "a800": Card("A800 80GB", 79.2, 312.0),
    "4090": Card("RTX 4090 24GB", 23.6, 165.2),
}


def card(spec: str) -> Card:
    """A card from ``--gpu``: a name of :data:`CARDS` (case-insensitive, "rtx4090"
    too) or a memory size in GiB ("48", "48GiB"; compute then unknown: 0)."""
    key = str(spec).strip().lower().replace("rtx", "").replace("nvidia", "").strip(" -_")
    if key in CARDS:
        return CARDS[key]
    num = key[:-3] if key.endswith("gib") else key[:-2] if key.endswith("gb") else key
    try:
        gib = float(num)
    except ValueError:
        raise ValueError(f"--gpu {spec!r}: not a known card ({', '.join(CARDS)}) or a size in GiB") from None
    if gib <= 0:
        raise ValueError(f"--gpu {spec!r}: the memory size must be positive")
    return Card(f"{gib:g} GiB device", gib, 0.0)


def device_card(device) -> Card | None:
    """The card of a CUDA ``device`` of this machine when it is one of
    :data:`CARDS` (by its name), else None. Never imports torch for a CPU
    device; no GPU here: None."""
    if not str(device or "").startswith("cuda"):
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(torch.device(str(device))).upper()
    except Exception:  # noqa: BLE001 - a dry run never fails on this
        return None
    for key in ("H200", "H100", "A800", "A100", "4090"):
        if key in name:
            return CARDS[key.lower()]
    return None


__all__ = ["CARDS", "Card", "GiB", "UTILISATION", "card", "device_card"]
