"""Run timm's own ``benchmark.py``, unchanged, on AFNet-M.

timm ships ``benchmark.py`` in its source repository only: neither the wheel nor (since timm moved
to pdm, checked for 0.9.16 and 1.0.31) the sdist on PyPI contains it. It is looked up, in order, in

1. ``$AFNETM_TIMM_BENCHMARK`` (path of a ``benchmark.py``),
2. the cache, ``<cache>/timm-<version>-scripts/benchmark.py`` (``<cache>`` = ``$AFNETM_CACHE``, else
   ``.cache`` of the source checkout, else ``~/.cache/afnetm-timm``),
3. the timm sdist of the installed version (the one ``tests/timm_upstream.py`` downloads with
   ``pip download --no-deps --no-binary :all: timm==<version>``; reused when already there),
4. timm's GitHub repository at the tag of the installed version.

and copied into the cache. It runs in a fresh interpreter that imports ``afnetm_timm`` first (timm
has no plugin discovery)::

    python -c "import afnetm_timm, runpy, sys; sys.argv = ['benchmark.py', '--model', 'afnet_m', ...];
               runpy.run_path('<path>/benchmark.py', run_name='__main__')"

Input size: benchmark.py passes ``in_chans=3`` to ``create_model`` (the AFNet-M factories drop it)
and builds its input from ``resolve_data_config(args, model)``. Without size arguments that is the
model's ``pretrained_cfg['input_size']``, (7, 224, 224): correct. ``--img-size N`` makes it
``(3, N, N)`` (``in_chans`` defaults to 3 there) and AFNet-M rejects the 3-channel input; use
``--input-size 7 N N`` instead. Keep ``--num-bench-iter`` >= 5: benchmark.py logs every
``num_bench_iter // 5`` steps.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm

from .._atomic import write_atomic

ENV_SCRIPT = "AFNETM_TIMM_BENCHMARK"
GITHUB_URL = "https://raw.githubusercontent.com/huggingface/pytorch-image-models/v{version}/benchmark.py"


def cache_root() -> Path:
    """``$AFNETM_CACHE``, else ``.cache`` of the source checkout, else ``~/.cache/afnetm-timm``."""
    env = os.environ.get("AFNETM_CACHE")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and os.access(checkout, os.W_OK):
        return checkout / ".cache"
    return Path.home() / ".cache" / "afnetm-timm"


def _from_sdist(download: bool) -> bytes | None:
    work = cache_root() / f"timm-{timm.__version__}-tests.download"  # shared with tests/timm_upstream.py
    sdists = sorted(work.glob(f"timm-{timm.__version__}.tar.gz"))
    if not sdists and download:
        work.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(work),
               f"timm=={timm.__version__}"]
        subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        sdists = sorted(work.glob(f"timm-{timm.__version__}.tar.gz"))
    if not sdists:
        return None
    with tarfile.open(sdists[0]) as tar:
        member = next((m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/benchmark.py")),
                      None)
        extracted = tar.extractfile(member) if member is not None else None
        return extracted.read() if extracted is not None else None


def _from_github(timeout: float = 15.0) -> bytes | None:
    try:
        with urllib.request.urlopen(GITHUB_URL.format(version=timm.__version__), timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError):
        return None
    return data if b"BenchmarkRunner" in data else None


def find_timm_benchmark(download: bool = True) -> Path | None:
    """Path of timm's benchmark.py for the installed timm (see module docstring), or None if unavailable."""
    env = os.environ.get(ENV_SCRIPT)
    if env:
        return Path(env) if Path(env).is_file() else None
    target = cache_root() / f"timm-{timm.__version__}-scripts" / "benchmark.py"
    if target.is_file():
        return target
    try:
        data = _from_sdist(download)
    except (OSError, subprocess.SubprocessError, tarfile.TarError):
        data = None
    if data is None and download:
        data = _from_github()
    if data is None:
        return None
    write_atomic(target, data)
    return target


def timm_benchmark_command(script: Path | str, args: Sequence[str]) -> list[str]:
    """The command running ``script`` with ``args`` in a fresh interpreter after ``import afnetm_timm``."""
    argv = ["benchmark.py", *args]
    code = (f"import afnetm_timm, runpy, sys; sys.argv = {argv!r}; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    return [sys.executable, "-c", code]


def tiny_args(model: str = "afnet_m", device: str = "cpu", img_size: int = 64, batch_size: int = 2) -> list[str]:
    """A quick inference run: packed input size given explicitly (``--input-size 7 N N``, not ``--img-size``)."""
    return ["--model", model, "--bench", "inference", "-b", str(batch_size), "--input-size", "7", str(img_size),
            str(img_size), "--num-warm-iter", "1", "--num-bench-iter", "5", "--device", device]


def parse_result(stdout: str) -> Any:
    """The JSON benchmark.py prints after its ``--result`` line."""
    marker = stdout.rfind("--result")
    if marker < 0:
        raise ValueError("benchmark.py printed no '--result' section")
    return json.loads(stdout[marker + len("--result"):])


def run_timm_benchmark(
    args: Sequence[str], script: Path | str | None = None, timeout: float = 600, download: bool = True
) -> dict[str, Any]:
    """Run timm's benchmark.py with ``args``: ``{'status': 'ok', 'result': ..., 'command': ...}``, or
    ``{'status': 'unavailable'|'error', 'reason': ...}``."""
    path = Path(script) if script is not None else find_timm_benchmark(download=download)
    if path is None or not path.is_file():
        return {"status": "unavailable", "args": list(args),
                "reason": f"timm {timm.__version__}'s benchmark.py not found (not in the PyPI sdist; set "
                          f"{ENV_SCRIPT} or allow the download from GitHub)"}
    cmd = timm_benchmark_command(path, args)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "script": str(path), "args": list(args), "reason": f"timed out after {timeout} s"}
    record: dict[str, Any] = {"script": str(path), "args": list(args), "returncode": proc.returncode}
    try:
        result = parse_result(proc.stdout)
    except ValueError as err:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {**record, "status": "error", "reason": f"{err}; last output: {' | '.join(tail)}"[:1000]}
    failed = proc.returncode != 0 or (isinstance(result, dict) and "error" in result)
    return {**record, "status": "error" if failed else "ok", "result": result}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m afnetm_timm.bench.timm_script [benchmark.py arguments]``: run it (tiny CPU run by default)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--where"]:
        path = find_timm_benchmark()
        print(path if path is not None else "unavailable")
        return 0 if path is not None else 1
    out = run_timm_benchmark(args or tiny_args())
    print(json.dumps(out, indent=2))
    return 0 if out["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
