"""Which compute units this CPU has, and the encode precision ``dtype="auto"`` picks from them.

bf16 pays off only where the hardware multiplies bf16 natively: AMX-BF16 or AVX512-BF16 CPUs
(Sapphire Rapids, Cooper Lake, Zen 4 and newer; oneDNN kernels) and bf16-capable GPUs; on AVX2-only
CPUs it is emulated and several times slower than fp32 (measured 5x, issue 19). On a CPU, bf16 runs
a bf16 COPY of the backbone's weights (:func:`cast_backbone`; the heads stay fp32) rather than
autocast, which re-casts every weight at every matmul: on an AMX Xeon (2 threads, MiniLM, 400 real
texts) fp32 5.97 s, bf16 autocast 2.37 s, bf16 weights 1.70 s, dense cosine to fp32 >= 0.9998
(bench/results/encode_onnx.md). GPUs keep autocast (fp16/bf16 with fp32 accumulation). int8
(ONNX Runtime's dynamic quantization, ``embforge export --quantize int8``) uses AVX512-VNNI or
AMX-INT8 where present and AVX2 otherwise. ``auto`` resolves to bf16 where it is native, else
fp32, and the encode log says which and why.

Example:
    >>> units = cpu_units()
    >>> resolve_dtype("fp32", "cpu").dtype
    'fp32'
    >>> resolve_dtype("auto", "cpu", units).dtype in ("fp32", "bf16")
    True
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CpuUnits",
    "DtypeChoice",
    "cast_backbone",
    "cast_weights",
    "cpu_flags",
    "cpu_units",
    "resolve_dtype",
]

#: The flags that matter for embedding inference, in the order the log prints them.
UNIT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first core in ``cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@dataclass(frozen=True)
class CpuUnits:
    """The CPU's vector/matrix units: ``flags`` (of ``UNIT_FLAGS``, from /proc/cpuinfo) and torch's
    ``capability`` (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512, ...)."""

    flags: tuple[str, ...]
    capability: str

    @property
    def native_bf16(self) -> bool:
        if self.flags:
            return "amx_bf16" in self.flags or "avx512_bf16" in self.flags
        probes = (
            getattr(torch.cpu, p, None) for p in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        )
        return any(bool(p and p()) for p in probes)  # no /proc/cpuinfo (macOS, Windows): torch's probe

    @property
    def int8_units(self) -> str:
        """The int8 matrix units ONNX Runtime can use: AMX-INT8, AVX512-VNNI or plain AVX2/AVX512."""
        for flag, name in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx512f", "AVX512")):
            if flag in self.flags:
                return name
        return "AVX2" if "avx2" in self.flags else "none found"

    def describe(self) -> str:
        return f"torch capability {self.capability}; CPU flags {' '.join(self.flags) or 'unknown'}"


def cpu_units(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuUnits:
    """This CPU's units (flags from ``cpuinfo``, capability from torch)."""
    flags = cpu_flags(cpuinfo)
    return CpuUnits(tuple(f for f in UNIT_FLAGS if f in flags), str(torch.backends.cpu.get_cpu_capability()))


@dataclass(frozen=True)
class DtypeChoice:
    """The encode precision (``fp32`` | ``bf16`` | ``fp16``) and why, for the log line."""

    dtype: str
    reason: str

    def log_line(self) -> str:
        return f"encode precision: {self.dtype} ({self.reason})"


def resolve_dtype(dtype: str, device: torch.device | str, units: CpuUnits | None = None) -> DtypeChoice:
    """``fp32``/``bf16``/``fp16`` as given; ``auto`` -> bf16 where ``device`` computes it natively, else fp32."""
    if dtype != "auto":
        return DtypeChoice(dtype, "as asked")
    dev = torch.device(device)
    if dev.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return DtypeChoice("bf16" if ok else "fp32", f"auto: the GPU {'supports' if ok else 'lacks'} bf16")
    if dev.type != "cpu":
        return DtypeChoice("fp32", f"auto: no bf16 rule for {dev.type}")
    units = units or cpu_units()
    if units.native_bf16:
        why = "native bf16 matmul; a bf16 copy of the backbone's weights, heads in fp32"
        return DtypeChoice("bf16", f"auto: {why} ({units.describe()})")
    return DtypeChoice("fp32", f"auto: bf16 would be emulated here ({units.describe()})")


def cast_weights(dtype: str, device: torch.device | str) -> bool:
    """True where ``dtype`` runs as a cast copy of the weights (bf16 on a CPU), False for autocast."""
    return dtype == "bf16" and torch.device(device).type == "cpu"


#: backbone -> (fingerprint of its fp32 weights, the cast copy); weak so a dropped model frees its copy
_CASTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def cast_backbone(backbone: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """An eval-mode copy of ``backbone`` with its floating weights in ``dtype``, cached.

    The copy is remade when a weight of ``backbone`` changes: the fingerprint is each parameter's
    and buffer's storage pointer and in-place version counter (an optimizer step, ``load_state_dict``
    and ``.to()`` all change one), so training between two ``encode`` calls is never served stale
    weights. Memory: one more copy of the backbone at ``dtype``'s width (bf16: half the fp32 size).
    """
    tensors = [*backbone.parameters(), *backbone.buffers()]
    key = (dtype, tuple((t.data_ptr(), t._version, t.dtype) for t in tensors))
    hit = _CASTS.get(backbone)
    if hit is not None and hit[0] == key:
        return hit[1]
    cast = copy.deepcopy(backbone).to(dtype).eval()
    for p in cast.parameters():
        p.requires_grad_(False)
    _CASTS[backbone] = (key, cast)
    return cast
