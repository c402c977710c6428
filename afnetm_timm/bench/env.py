"""The stamp written into every results file: machine, devices, library versions, date, load.

Benchmarks on shared machines are noisy; the load average at the start and end of a run is recorded
so a reader can tell a quiet run from a contended one.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name and not name.isdigit():
                    return name
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cuda_available() -> bool:
    """Whether a CUDA device can be used (False, without raising, on CPU-only builds and machines)."""
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # broken driver installs raise from is_available on some versions
        return False


def device_info(device: str) -> dict[str, Any]:
    """Name and facts of a benchmark device ('cpu' or 'cuda')."""
    if device == "cpu":
        return {"type": "cpu", "name": cpu_model(), "cores": usable_cores(), "torch_threads": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(0)
    return {
        "type": "cuda",
        "name": torch.cuda.get_device_name(0),
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def versions() -> dict[str, str]:
    """Versions of the libraries the numbers depend on."""
    import afnetm_timm

    return {
        "afnetm_timm": afnetm_timm.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def machine() -> dict[str, Any]:
    """Platform, CPU model and cores of this machine."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def stamp(devices: list[str], command: str) -> dict[str, Any]:
    """The header of a results file: date (UTC), command, machine, devices, versions, load at start."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine(),
        "devices": [device_info(d) for d in devices],
        "versions": versions(),
        "load_average_start": load_average(),
    }
