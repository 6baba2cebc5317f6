"""Which precision a training run uses: bf16 autocast where the hardware computes it natively.

``loop.precision: auto`` picks bf16 autocast (Kalamkar et al. 2019, "A Study of BFLOAT16 for
Deep Learning Training": bf16 keeps fp32's exponent range, so no loss scaling is needed) on

* CUDA devices that support bf16 (Ampere and newer), and
* CPUs with AMX-BF16 or AVX512-BF16 (Sapphire Rapids, Cooper Lake, Zen 4 and newer), where
  oneDNN runs bf16 matrix products natively (measured 2x a fp32 linear layer on 2 cores);

and fp32 everywhere else: on AVX2-only CPUs bf16 is emulated and several times slower than fp32.
The choice and its reason go to the log (one line, stderr) so a run says which path it took.

Example:
    >>> resolve_precision("fp32", "cpu").precision
    'fp32'
    >>> resolve_precision("auto", "cpu").precision in ("fp32", "bf16")
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embforge.model.precision import cpu_flags  # one reader of /proc/cpuinfo (encode uses it too)

__all__ = ["PrecisionChoice", "resolve_precision", "cpu_flags", "cpu_has_native_bf16"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses (``fp32`` | ``bf16``) and why, for the log line."""

    precision: str
    reason: str

    def log_line(self) -> str:
        return f"precision: {self.precision} ({self.reason})"


def cpu_has_native_bf16(flags: set[str] | None = None) -> tuple[bool, str]:
    """(native bf16 matmul?, the evidence): ``/proc/cpuinfo`` flags, else torch's own CPU probe."""
    flags = cpu_flags() if flags is None else flags
    found = [f for f in _BF16_FLAGS if f in flags]
    if flags:
        return bool(found), ("CPU flags " + "+".join(found)) if found else "CPU has no amx_bf16/avx512_bf16"
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # no /proc/cpuinfo (macOS, Windows)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    native = bool((probe and probe()) or (amx and amx()))
    return native, "torch reports AVX512-BF16/AMX" if native else "torch reports no AVX512-BF16/AMX"


def resolve_precision(
    precision: str, device: torch.device | str, flags: set[str] | None = None
) -> PrecisionChoice:
    """``fp32``/``bf16`` as given; ``auto`` -> bf16 where ``device`` computes it natively, else fp32.

    ``flags`` overrides the CPU flags read from ``/proc/cpuinfo`` (tests).
    """
    if precision in ("fp32", "bf16"):
        return PrecisionChoice(precision, "set by loop.precision")
    dev = torch.device(device)
    if dev.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(dev) if torch.cuda.is_available() else "cuda"
        why = f"{name} {'supports' if ok else 'lacks'} bf16"
        return PrecisionChoice("bf16" if ok else "fp32", f"auto: {why}")
    if dev.type != "cpu":
        return PrecisionChoice("fp32", f"auto: no bf16 autocast rule for {dev.type}")
    native, why = cpu_has_native_bf16(flags)
    if native:
        return PrecisionChoice("bf16", f"auto: {why}, bf16 autocast is native")
    return PrecisionChoice("fp32", f"auto: {why}, bf16 would be emulated (slower)")
