"""Launch ``embforge`` under ``torchrun`` on this machine (gloo, CPU) for the multi-process tests."""

from __future__ import annotations

import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_embforge(
    args: list[str], env: dict[str, str], nproc: int = 2, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node NPROC -m embforge.cli.app ARGS`` on one node; output captured."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "embforge.cli.app",
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
