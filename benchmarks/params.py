"""Parameter counts of every AFNet-M variant (both countings, against Table 4) → results/params.{json,md}."""
import datetime
import json
import platform
import sys
from pathlib import Path

import timm
import torch

import afnetm_timm
from afnetm_timm.params import format_parameter_table, parameter_table

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    rows = parameter_table()
    stamp = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": sys.version.split()[0]},
        "versions": {"afnetm_timm": afnetm_timm.__version__, "torch": torch.__version__, "timm": timm.__version__},
        "command": "python benchmarks/params.py",
    }
    RESULTS.mkdir(exist_ok=True)
    for name, text in (
        ("params.json", json.dumps({**stamp, "rows": [r.as_dict() for r in rows]}, indent=2)),
        ("params.md", f"# Parameters ({stamp['date']}, torch {torch.__version__}, timm {timm.__version__})\n\n"
                      + format_parameter_table(rows) + "\n"),
    ):
        tmp = RESULTS / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(RESULTS / name)  # atomic: never a partial results file
    print(format_parameter_table(rows))


if __name__ == "__main__":
    main()
