"""``afnetm hub export`` and ``afnetm hub push``.

``afnetm_timm.cli.build_parser`` calls `add_hub_commands` with its subparsers; ``python -m afnetm_timm.hub``
runs the same commands on their own.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_hub_commands", "cmd_export", "cmd_push", "main"]


def _read_json_object(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{what}: cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what}: {path} must hold a JSON object")
    return data


def _file_error(command: str, err: OSError) -> int:
    """Missing inputs or an occupied output folder: one line on stderr, exit status 1."""
    print(f"afnetm hub {command}: {err}", file=sys.stderr)
    return 1


def cmd_export(args: argparse.Namespace) -> int:
    """``afnetm hub export CHECKPOINT DIR``."""
    from .export import export_checkpoint

    try:
        preprocessing = _read_json_object(args.preprocessing, "--preprocessing") if args.preprocessing else None
        info = export_checkpoint(
            args.checkpoint, args.dir, results=args.results, preprocessing=preprocessing, repo_id=args.repo_id,
            license=args.license, license_name=args.license_name, overwrite=args.overwrite,
        )
    except OSError as err:
        return _file_error("export", err)
    print(f"exported {info.architecture} to {info.path}: " + ", ".join(sorted(p.name for p in info.path.iterdir())))
    if not info.measured:
        print("model card: no measured results; `afnetm hub push` refuses this folder (export with --results)")
    elif info.synthetic_only:
        print("model card: results on synthetic data only (push needs --allow-synthetic)")
    else:
        print(f"model card: {len(info.results)} measured result(s)")
    name = f"hf-hub:{info.repo_id}" if info.repo_id else f"local-dir:{info.path}"
    print(f"load with: timm.create_model({name!r}, pretrained=True)  (after `import afnetm_timm`)")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """``afnetm hub push DIR REPO_ID``."""
    from .push import push_to_hub

    try:
        result = push_to_hub(
            args.dir, args.repo_id, private=args.private, revision=args.revision, create_pr=args.create_pr,
            commit_message=args.commit_message, allow_synthetic=args.allow_synthetic, dry_run=args.dry_run,
        )
    except OSError as err:  # huggingface_hub's HTTP errors are OSErrors too
        return _file_error("push", err)
    if args.dry_run:
        print(f"{args.dir}: ready to push to {args.repo_id} (dry run, nothing uploaded)")
    else:
        url = getattr(result, "pr_url", None) or getattr(result, "commit_url", None) or result
        print(f"pushed {args.dir} to {args.repo_id}: {url}")
    return 0


def add_hub_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``hub export`` and ``hub push`` to an ``afnetm``-style subparsers object; returns the ``hub`` parser."""
    hub = subparsers.add_parser(
        "hub", help="export trained weights as a timm/Hugging Face Hub folder with a model card; push it",
        description=_DESCRIPTION,
    )
    _add_export_and_push(hub)
    return hub


_DESCRIPTION = "Publish AFNet-M weights: safetensors only, timm-compatible, with the model card."


def _add_export_and_push(hub: argparse.ArgumentParser) -> None:
    commands = hub.add_subparsers(dest="hub_command", required=True)

    export = commands.add_parser(
        "export", help="checkpoint -> folder with config.json, model.safetensors and README.md (model card)",
        description="Export an afnetm-timm checkpoint (afnetm_timm.hub.save_checkpoint) as a timm-compatible folder "
                    "that timm.create_model('local-dir:DIR', pretrained=True) loads.",
    )
    export.add_argument("checkpoint", help="afnetm-timm checkpoint (.safetensors with the model config in its metadata)")
    export.add_argument("dir", help="output folder (must be missing or empty, unless --overwrite)")
    export.add_argument("--results", metavar="JSON",
                        help="measured results (schema: afnetm_timm.hub.results); without it the card says "
                             "'no measured results' and push refuses the folder")
    export.add_argument("--preprocessing", metavar="JSON",
                        help="preprocessing settings used (default: from the results or the checkpoint metadata)")
    export.add_argument("--repo-id", help="Hub repo the card names (default: afnetm-timm/<arch>.<dataset> for real "
                                          "results on BU-3DFE or Bosphorus)")
    export.add_argument("--license", help="licence of the weights on the Hub (default: from the datasets)")
    export.add_argument("--license-name", help="license_name for license 'other'")
    export.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")
    export.set_defaults(func=cmd_export)

    push = commands.add_parser(
        "push", help="upload an exported folder to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)",
        description="Upload an `afnetm hub export` folder. Refuses folders without measured results, with pickle "
                    "files, or whose weights do not match their config.",
    )
    push.add_argument("dir", help="folder written by `afnetm hub export`")
    push.add_argument("repo_id", help="<org or user>/<name>, the repo the model card names")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (created if missing)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.add_argument("--commit-message")
    push.add_argument("--allow-synthetic", action="store_true",
                      help="allow a folder whose results were all measured on synthetic data")
    push.add_argument("--dry-run", action="store_true", help="verify the folder only; upload nothing")
    push.set_defaults(func=cmd_push)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m afnetm_timm.hub export|push ...`` (the same as ``afnetm hub ...``)."""
    parser = argparse.ArgumentParser(prog="python -m afnetm_timm.hub", description=_DESCRIPTION)
    _add_export_and_push(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as err:
        print(f"afnetm hub {args.hub_command}: {err}", file=sys.stderr)
        return 1
