"""Weights on the Hugging Face Hub, offline: checkpoints, export, the model card, loading, push, refusals.

Nothing here reaches the network: conftest sets HF_HUB_OFFLINE=1, Hub caches are temporary folders
seeded in huggingface_hub's layout (refs/main + snapshots/<commit>/), and pushing goes to a fake HfApi.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import afnetm_timm
import afnetm_timm.models.afnet_m as afnet_m_module
from afnetm_timm.hub import (
    EXPORT_FILES,
    CheckpointFormatError,
    PublishRefusedError,
    ResultsFormatError,
    UnsafeWeightsError,
    WeightsMismatchError,
    WeightsNotAvailableError,
    export_checkpoint,
    load_checkpoint,
    parse_results,
    push_to_hub,
    read_export,
    save_checkpoint,
)
from afnetm_timm.hub.cli import add_hub_commands
from afnetm_timm.hub.cli import main as hub_main

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = "afnetm-timm/afnet_m.bu3dfe"
SMALL = dict(backbone="resnet10t")  # afnet_m with MA and AF on narrow-stemmed, one-block-per-stage branches
COMMIT = "0123456789abcdef0123456789abcdef01234567"


# --- helpers and fixtures ------------------------------------------------------------------------------------


def _result(**overrides) -> dict:
    result = {
        "dataset": "BU-3DFE", "protocol": "subject-independent 10-fold cross-validation, 60 subjects",
        "accuracy": {"mean": 81.25, "std": 2.5}, "per_class": {"anger": 70.0, "happiness": 96.5},
        "n_folds": 10, "repetitions": 2, "subjects": 60, "synthetic": False,
        "preprocessing": {"grid": 224, "depth_range_mm": [-80, 20], "mask": "brows+eyes+nose+mouth"},
    }
    result.update(overrides)
    return result


def _synthetic() -> dict:
    return _result(dataset="synthetic faces (afnetm_timm.demo)", synthetic=True, accuracy={"mean": 50.0, "std": 5.0},
                   per_class={}, repetitions=1, preprocessing=None)


def _x(size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return afnetm_timm.pack(torch.rand(2, 3, size, size, generator=g), torch.rand(2, 1, size, size, generator=g),
                            (torch.rand(2, 1, size, size, generator=g) > 0.5).float())


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_x())


def _assert_same_weights(model: torch.nn.Module, state: dict) -> None:
    got = model.state_dict()
    assert got.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def _seed_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A repo in huggingface_hub's cache layout: refs/main → snapshots/<commit>/<files>."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copyfile(source, snapshot / name)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face Hub cache used by huggingface_hub and timm in this test, offline."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small afnet_m (resnet10t branches) as a checkpoint and as an export with measured results."""
    root = tmp_path_factory.mktemp("small")
    with torch.random.fork_rng():
        torch.manual_seed(123)
        model = timm.create_model("afnet_m", **SMALL).eval()
    ckpt = save_checkpoint(model, root / "ckpt.safetensors", {"dataset": "BU-3DFE", "epochs": 3, "fold": 0})
    (root / "results.json").write_text(json.dumps(_result()))
    export = export_checkpoint(ckpt, root / "export", results=root / "results.json",
                               repo_id="someone/afnet_m-small-test")
    return dict(root=root, model=model, state=model.state_dict(), ckpt=ckpt, export=export.path,
                outputs=_outputs(model))


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The default afnet_m (as the registry tag builds it) exported for afnetm-timm/afnet_m.bu3dfe."""
    root = tmp_path_factory.mktemp("paper")
    with torch.random.fork_rng():
        torch.manual_seed(7)
        model = timm.create_model("afnet_m").eval()
    ckpt = save_checkpoint(model, root / "ckpt.safetensors", {"dataset": "BU-3DFE"})
    export = export_checkpoint(ckpt, root / "export", results=[_result()])  # default repo id from the results
    return dict(model=model, state=model.state_dict(), export=export.path, outputs=_outputs(model))


def _copy_export(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --- registry cfgs -------------------------------------------------------------------------------------------


def test_every_variant_keeps_its_untagged_cfg_first_and_tags_name_full_hub_ids() -> None:
    for name in timm.list_models("afnet_m*"):
        cfg = timm.create_model(name, device="meta").pretrained_cfg
        assert cfg.get("hf_hub_id") is None and cfg.get("tag") is None, name  # no weights by default
        assert len(cfg["mean"]) == len(cfg["std"]) == 7 and cfg["input_size"] == (7, 224, 224)
        assert cfg["label_names"] == afnetm_timm.EXPRESSION_NAMES and cfg["paper_ids"] == "arXiv:2205.11785"
        assert cfg["license"] == "apache-2.0"  # the code's licence; there are no weights
    tags = timm.list_pretrained("afnet_m*")
    assert set(tags) == {"afnet_m.bu3dfe", "afnet_m.bosphorus"}
    for tag in tags:
        cfg = timm.models.get_pretrained_cfg(tag)
        assert cfg.hf_hub_id == f"afnetm-timm/{tag}" and cfg.hf_hub_filename == "model.safetensors"
        assert cfg.license == "other" and cfg.label_names == afnetm_timm.EXPRESSION_NAMES and len(cfg.mean) == 7
        assert cfg.paper_ids == "arXiv:2205.11785"
    assert not afnet_m_module.PUBLISHED_TAGS  # nothing trained and measured is published yet


# --- fail fast without weights --------------------------------------------------------------------------------


def test_unpublished_tag_fails_fast_and_clearly_offline(hub_cache) -> None:
    start = time.monotonic()
    with pytest.raises(WeightsNotAvailableError) as info:
        timm.create_model("afnet_m.bu3dfe", pretrained=True)
    assert time.monotonic() - start < 1.0
    message = str(info.value)
    assert REPO in message and "not published" in message and "not in the local Hugging Face cache" in message
    assert str(hub_cache) in message and "pretrained=False" in message

    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"No pretrained weights exist for afnet_m.*afnet_m\.bu3dfe \(not published"):
        timm.create_model("afnet_m", pretrained=True)
    with pytest.raises(Exception, match="cache"):  # huggingface_hub's own offline error, before our factory runs
        timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    assert time.monotonic() - start < 1.0


def test_published_tag_offline_fails_fast_without_cache_and_loads_from_it(paper, hub_cache, monkeypatch) -> None:
    monkeypatch.setattr(afnet_m_module, "PUBLISHED_TAGS", frozenset({"afnet_m.bu3dfe"}))
    start = time.monotonic()
    with pytest.raises(WeightsNotAvailableError, match=r"afnet_m\.bu3dfe.*not in the local .*HF_HUB_OFFLINE=1"):
        timm.create_model("afnet_m.bu3dfe", pretrained=True)
    assert time.monotonic() - start < 1.0
    _seed_repo(hub_cache, REPO, {"model.safetensors": paper["export"] / "model.safetensors"})
    _assert_same_weights(timm.create_model("afnet_m.bu3dfe", pretrained=True), paper["state"])


# --- checkpoints ---------------------------------------------------------------------------------------------


def test_checkpoint_holds_weights_and_config_in_safetensors_metadata(small) -> None:
    with safe_open(str(small["ckpt"]), framework="pt") as f:
        meta = f.metadata()
    record = json.loads(meta["afnetm"])
    assert meta["format"] == "pt" and record["format"] == "afnetm-checkpoint" and record["version"] == 1
    assert record["architecture"] == "afnet_m"
    assert record["model_args"] == {"backbone": "resnet10t", "num_classes": 6, "global_pool": "avg"}
    assert record["label_names"] == list(afnetm_timm.EXPRESSION_NAMES)
    assert record["metadata"] == {"dataset": "BU-3DFE", "epochs": 3, "fold": 0}
    ckpt = load_checkpoint(small["ckpt"])
    model = ckpt.create_model()
    _assert_same_weights(model, small["state"])
    torch.testing.assert_close(_outputs(model), small["outputs"], rtol=0, atol=0)
    assert not [p for p in small["root"].iterdir() if p.name.startswith(".")]  # no temporary files left


def test_checkpoint_records_reset_classifier_and_refuses_what_it_cannot_rebuild(tmp_path) -> None:
    model = timm.create_model("afnet_m_2d_no_ma", device="meta", **SMALL)
    model.reset_classifier(3)
    model = model.to_empty(device="cpu")
    ckpt = load_checkpoint(save_checkpoint(model, tmp_path / "c3.safetensors", label_names=["a", "b", "c"]))
    assert ckpt.model_args["num_classes"] == 3 and ckpt.label_names == ["a", "b", "c"]
    assert ckpt.create_model().pretrained_cfg["label_names"] == ("a", "b", "c")

    with pytest.raises(ValueError, match=r"\*\.safetensors"):
        save_checkpoint(model, tmp_path / "c.pth")
    bare = afnetm_timm.AFNetM(device="meta", **SMALL)  # not built by timm.create_model: no recorded config
    with pytest.raises(ValueError, match="architecture= and model_args="):
        save_checkpoint(bare, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointFormatError, match="would not rebuild"):
        save_checkpoint(model, tmp_path / "wrong.safetensors", model_args={"num_classes": 6, **SMALL})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(model, tmp_path / "meta.safetensors", {"when": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c3.safetensors"]


def test_safetensors_whose_header_length_starts_with_0x80_is_not_a_pickle(tmp_path) -> None:
    """A safetensors file begins with its header length; bytes 80 02 there must not read as pickle's PROTO 2."""
    from afnetm_timm.hub.weights import read_safetensors

    path = tmp_path / "w.safetensors"
    for pad in range(2000):  # header length 0x0280: the file starts like a protocol-2 pickle, b"\x80\x02"
        save_file({"w": torch.ones(2, 3)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.fail("no padding gave a header length starting with bytes 80 02")
    shapes, metadata = read_safetensors(path)
    assert shapes == {"w": (2, 3)} and metadata["pad"].startswith("x")
    # a real pickle (protocol 2-5) and torch.save's zip archive are still refused, whatever their name
    import pickle

    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        read_safetensors(raw)
    zipped = tmp_path / "zip.safetensors"
    torch.save({"w": torch.zeros(2)}, zipped)
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        read_safetensors(zipped)


def test_load_checkpoint_refuses_pickles_foreign_and_corrupt_files(tmp_path, small, monkeypatch) -> None:
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was unpickled"))
    pickle = tmp_path / "ckpt.safetensors"
    torch.save({"w": torch.zeros(2)}, tmp_path / "real.pt")
    shutil.copyfile(tmp_path / "real.pt", pickle)
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        load_checkpoint(pickle)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointFormatError, match="without afnetm-timm checkpoint metadata"):
        load_checkpoint(plain)
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(2)}, str(newer), metadata={"afnetm": json.dumps(
        {"format": "afnetm-checkpoint", "version": 99, "architecture": "afnet_m", "model_args": {}})})
    with pytest.raises(CheckpointFormatError, match="version 99"):
        load_checkpoint(newer)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(small["ckpt"].read_bytes()[:-1000])
    with pytest.raises(WeightsMismatchError, match="not a valid safetensors file"):
        load_checkpoint(truncated)


# --- export → local-dir ---------------------------------------------------------------------------------------


def _hub_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afnetm")
    add_hub_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_export_then_local_dir_load_gives_identical_outputs(small, tmp_path, capsys) -> None:
    out = tmp_path / "exported"
    args = _hub_parser().parse_args(["hub", "export", str(small["ckpt"]), str(out),
                                     "--results", str(small["root"] / "results.json"), "--repo-id", "me/afnet-m"])
    assert args.func(args) == 0
    assert "1 measured result" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no temporary folder left beside it

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "afnet_m" and config["model_args"]["backbone"] == "resnet10t"
    assert config["label_names"] == list(afnetm_timm.EXPRESSION_NAMES)
    cfg = config["pretrained_cfg"]
    assert cfg["mean"] == list(afnetm_timm.PACKED_MEAN) and cfg["std"] == list(afnetm_timm.PACKED_STD)
    assert cfg["input_size"] == [7, 224, 224] and cfg["hf_hub_filename"] == "model.safetensors"
    assert cfg["license"] == "other"  # trained on BU-3DFE: its terms
    assert config["afnetm"]["results"][0]["accuracy"] == {"mean": 81.25, "std": 2.5}
    assert config["afnetm"]["repo_id"] == "me/afnet-m"

    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    _assert_same_weights(model, small["state"])
    torch.testing.assert_close(_outputs(model), small["outputs"], rtol=0, atol=0)
    assert model.pretrained_cfg["label_names"] == list(afnetm_timm.EXPRESSION_NAMES)
    fresh = timm.create_model("afnet_m", **SMALL)
    assert not torch.equal(_outputs(fresh), small["outputs"])  # the equality above is the loaded weights

    head = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=3)  # new head, same trunk
    assert head.num_classes == 3
    torch.testing.assert_close(head.stem.conv1[0].weight, small["state"]["stem.conv1.0.weight"])


def test_model_card_with_measured_results(small) -> None:
    card = (small["export"] / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n")
    assert 'license: "other"' in card and "bu-3dfe-licence-terms" in card
    assert 'timm.create_model("hf-hub:someone/afnet_m-small-test", pretrained=True)' in card
    assert "packed" in card and "(B, 7, H, W)" in card and "| mean | 0.485 |" in card  # inputs and normalisation
    assert "| `depth_range_mm` | `[-80, 20]` |" in card  # the preprocessing settings used
    assert "not** a reading of emotions" in card and "surveillance" in card and "decisions about people" in card
    assert "inherit their terms" in card
    assert "| BU-3DFE | real (measured by us) |" in card and "81.25 ± 2.50 %" in card and "| anger | 70.00 % |" in card
    assert "reported by the paper" in card and "90.08 %" in card and "88.31 %" in card
    assert "91.54 (AFNet-M)" in card and "Ours w/o MA" in card  # Table 4, from parameter_table
    assert "Our protocol differs from the paper's" in card  # 2 repetitions, not 100
    assert "@inproceedings{sui2023afnetm," in card and "${" not in card
    assert "No measured results" not in card


def test_model_card_without_results_or_with_synthetic_results(small, tmp_path) -> None:
    bare = export_checkpoint(small["ckpt"], tmp_path / "bare")
    card = (bare.path / "README.md").read_text()
    # readable by others like any folder and file (mkdtemp makes 0o700, safetensors writes 0o600)
    from afnetm_timm._atomic import default_mode

    assert bare.path.stat().st_mode & 0o777 == default_mode(directory=True)
    assert {f.stat().st_mode & 0o777 for f in bare.path.iterdir()} == {default_mode()}
    assert not bare.measured and bare.repo_id is None
    assert "No measured results" in card and "not-for-publication" in card and "local-dir:path/to/this/folder" in card
    assert "reported by the paper" in card and "measured by us" not in card

    synthetic = export_checkpoint(small["ckpt"], tmp_path / "synthetic", results=[_synthetic()])
    card = (synthetic.path / "README.md").read_text()
    assert synthetic.synthetic_only and "Synthetic data only" in card and "synthetic-data" in card
    assert "*synthetic* (not a benchmark result)" in card and "measured by us" not in card


def test_export_keeps_the_results_of_its_own_architecture(small, tmp_path) -> None:
    """`afnetm protocol` writes one result per variant; the export keeps the checkpoint's own."""
    arch = "afnet_m"  # the small fixture's checkpoint
    results = {"results": [_result(model="afnet_m_s1", accuracy={"mean": 11.0, "std": 1.0}),
                           _result(model=arch), _result(model="afnet_m_2d", accuracy={"mean": 22.0, "std": 1.0})]}
    export = export_checkpoint(small["ckpt"], tmp_path / "mixed", results=results)
    assert [r.model for r in export.results] == [arch]
    with pytest.raises(ResultsFormatError, match="none measured on"):
        export_checkpoint(small["ckpt"], tmp_path / "other", results=[_result(model="afnet_m_s1")])


def test_export_is_atomic(small, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_checkpoint(small["ckpt"], out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    import afnetm_timm.hub.export as export_module

    def broken(ctx):
        raise RuntimeError("template failure")

    monkeypatch.setattr(export_module, "render_model_card", broken)
    with pytest.raises(RuntimeError, match="template failure"):
        export_checkpoint(small["ckpt"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # the previous folder is untouched
    with pytest.raises(RuntimeError, match="template failure"):
        export_checkpoint(small["ckpt"], tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial or temporary folder
    monkeypatch.undo()

    export_checkpoint(small["ckpt"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- a seeded Hub cache: hf-hub:, the registry tag, torch.hub -------------------------------------------------


def test_seeded_hub_cache_loads_hf_hub_registry_tag_and_torch_hub(paper, hub_cache) -> None:
    assert read_export(paper["export"]).repo_id == REPO  # default repo id: real results on BU-3DFE
    _seed_repo(hub_cache, REPO, {name: paper["export"] / name for name in EXPORT_FILES})

    via_hub = timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    _assert_same_weights(via_hub, paper["state"])
    assert via_hub.pretrained_cfg["hf_hub_id"] == REPO

    via_tag = timm.create_model("afnet_m.bu3dfe", pretrained=True)  # not published, but in the local cache
    _assert_same_weights(via_tag, paper["state"])
    torch.testing.assert_close(_outputs(via_tag), paper["outputs"], rtol=0, atol=0)
    assert via_tag.pretrained_cfg["tag"] == "bu3dfe"

    via_torch_hub = torch.hub.load(str(REPO_ROOT), "afnet_m", source="local", pretrained=True, pretrained_cfg="bu3dfe")
    _assert_same_weights(via_torch_hub, paper["state"])


# --- refusals: pickles, mismatches, corruption -----------------------------------------------------------------


def test_pickle_only_repos_and_folders_are_refused(small, hub_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was unpickled"))
    folder = tmp_path / "pickle_only"
    folder.mkdir()
    shutil.copyfile(small["export"] / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really loaded")
    with pytest.raises(UnsafeWeightsError, match=r"only pickle weights \(pytorch_model\.bin\).*model\.safetensors"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)

    _seed_repo(hub_cache, "someone/pickle-only", {"config.json": folder / "config.json",
                                                  "pytorch_model.bin": folder / "pytorch_model.bin"})
    with pytest.raises(UnsafeWeightsError, match=r"someone/pickle-only.*only pickle weights \(pytorch_model\.bin\)"):
        timm.create_model("hf-hub:someone/pickle-only", pretrained=True)
    _seed_repo(hub_cache, REPO, {"pytorch_model.bin": folder / "pytorch_model.bin"})
    with pytest.raises(UnsafeWeightsError, match="only pickle weights"):
        timm.create_model("afnet_m.bu3dfe", pretrained=True)

    disguised = _copy_export(small["export"], tmp_path / "disguised")
    (disguised / "model.safetensors").write_bytes((folder / "pytorch_model.bin").read_bytes())
    with pytest.raises(UnsafeWeightsError, match="pickle / torch.save file"):
        timm.create_model(f"local-dir:{disguised}", pretrained=True)
    with pytest.raises(UnsafeWeightsError, match="not a .safetensors file"):
        timm.create_model("afnet_m", pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "x.pth")))


def test_mismatched_or_corrupt_weights_give_clear_errors(small, hub_cache, tmp_path) -> None:
    state = load_file(str(small["export"] / "model.safetensors"))

    wrong_shape = _copy_export(small["export"], tmp_path / "wrong_shape")
    other = timm.create_model("afnet_m", num_classes=3, device="meta", **SMALL).to_empty(device="cpu")
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(wrong_shape / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"2 shape mismatch\(es\): head\.fc\.bias: weights \[3\] vs model \[6\]"):
        timm.create_model(f"local-dir:{wrong_shape}", pretrained=True)

    missing = _copy_export(small["export"], tmp_path / "missing")
    save_file({k: v for k, v in state.items() if not k.startswith("stages.3.fusion.")}, str(missing / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"missing key\(s\): stages\.3\.fusion\."):
        timm.create_model(f"local-dir:{missing}", pretrained=True, num_classes=3)  # no partial load, new head or not

    other_variant = _copy_export(small["export"], tmp_path / "other_variant")
    two_d = timm.create_model("afnet_m_2d", device="meta", **SMALL).to_empty(device="cpu")
    save_file({k: v.contiguous() for k, v in two_d.state_dict().items()}, str(other_variant / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"do not fit afnet_m\(.*missing key\(s\): depth_stem"):
        timm.create_model(f"local-dir:{other_variant}", pretrained=True)

    truncated = _copy_export(small["export"], tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsMismatchError, match="not a valid safetensors file"):
        timm.create_model(f"local-dir:{truncated}", pretrained=True)
    _seed_repo(hub_cache, "someone/truncated", {n: truncated / n for n in EXPORT_FILES})
    with pytest.raises(WeightsMismatchError, match="not a valid safetensors file"):
        timm.create_model("hf-hub:someone/truncated", pretrained=True)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copyfile(small["export"] / "config.json", no_weights / "config.json")
    with pytest.raises(WeightsNotAvailableError, match="no model.safetensors"):
        timm.create_model(f"local-dir:{no_weights}", pretrained=True)


# --- push --------------------------------------------------------------------------------------------------------


class FakeHfApi:
    """Captures what push_to_hub would send to the Hub: repo creation and the uploaded folder's files."""

    def __init__(self, token=None, **kwargs) -> None:
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", dict(repo_id=repo_id, **kwargs)))
        return argparse.Namespace(repo_id=repo_id)

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", dict(repo_id=repo_id, **kwargs)))

    def file_exists(self, repo_id, filename, **kwargs):
        return False

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", dict(repo_id=repo_id, **kwargs)))
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        return argparse.Namespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}", pr_url=None)


def test_push_uploads_exactly_the_verified_folder(paper, tmp_path) -> None:
    folder = _copy_export(paper["export"], tmp_path / "folder")
    (folder / "notes.txt").write_text("not part of the export")
    api = FakeHfApi()
    commit = push_to_hub(folder, REPO, api=api, private=True, revision="v1")
    assert commit.commit_url.endswith(COMMIT)
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1] == dict(repo_id=REPO, private=True, exist_ok=True, repo_type="model")
    upload = api.calls[2][1]
    assert upload["revision"] == "v1" and upload["create_pr"] is False and "afnet_m" in upload["commit_message"]
    assert sorted(api.uploaded) == sorted(EXPORT_FILES)
    for name in EXPORT_FILES:
        assert api.uploaded[name] == (folder / name).read_bytes()


def test_push_refuses_unmeasured_synthetic_pickled_tampered_or_misnamed_folders(small, paper, tmp_path) -> None:
    api = FakeHfApi()
    bare = export_checkpoint(small["ckpt"], tmp_path / "bare", repo_id="me/bare").path
    with pytest.raises(PublishRefusedError, match="no measured results"):
        push_to_hub(bare, "me/bare", api=api)

    synthetic = export_checkpoint(small["ckpt"], tmp_path / "synthetic", results=[_synthetic()],
                                  repo_id="me/demo").path
    with pytest.raises(PublishRefusedError, match="synthetic data.*--allow-synthetic"):
        push_to_hub(synthetic, "me/demo", api=api)
    assert api.calls == []  # nothing reached the Hub
    push_to_hub(synthetic, "me/demo", api=api, allow_synthetic=True)
    assert sorted(api.uploaded) == sorted(EXPORT_FILES)

    pickled = _copy_export(small["export"], tmp_path / "pickled")
    (pickled / "extra.ckpt").write_bytes(b"\x80\x04")
    with pytest.raises(PublishRefusedError, match=r"pickle weight file\(s\) \(extra\.ckpt\)"):
        push_to_hub(pickled, "someone/afnet_m-small-test", api=FakeHfApi())

    tampered = _copy_export(small["export"], tmp_path / "tampered")
    state = load_file(str(tampered / "model.safetensors"))
    state["head.fc.bias"] = state["head.fc.bias"] + 1
    save_file(state, str(tampered / "model.safetensors"))
    with pytest.raises(PublishRefusedError, match="SHA-256"):
        push_to_hub(tampered, "someone/afnet_m-small-test", api=FakeHfApi())

    with pytest.raises(PublishRefusedError, match="export again with --repo-id other/name"):
        push_to_hub(small["export"], "other/name", api=FakeHfApi())
    with pytest.raises(PublishRefusedError, match="invalid Hub repo id"):
        push_to_hub(small["export"], "not a repo id!", api=FakeHfApi())

    small_as_tag = export_checkpoint(small["ckpt"], tmp_path / "small_as_tag", results=[_result()], repo_id=REPO).path
    with pytest.raises(PublishRefusedError, match=r"afnet_m\.bu3dfe.*registry's default arguments"):
        push_to_hub(small_as_tag, REPO, api=FakeHfApi())


def test_cli_push_uses_huggingface_hub_and_dry_run_uploads_nothing(paper, monkeypatch, capsys) -> None:
    import huggingface_hub

    created = []

    def fake_api(**kwargs):
        created.append(FakeHfApi(**kwargs))
        return created[-1]

    monkeypatch.setattr(huggingface_hub, "HfApi", fake_api)
    assert hub_main(["push", str(paper["export"]), REPO, "--dry-run"]) == 0
    assert created == [] and "dry run" in capsys.readouterr().out
    assert hub_main(["push", str(paper["export"]), REPO]) == 0
    assert f"commit/{COMMIT}" in capsys.readouterr().out and sorted(created[0].uploaded) == sorted(EXPORT_FILES)
    assert hub_main(["push", str(paper["export"]), "other/name"]) == 1
    assert "afnetm hub push: refusing" in capsys.readouterr().err


# --- results schema ------------------------------------------------------------------------------------------


def test_results_schema() -> None:
    (one,) = parse_results(_result(accuracy={"mean": 0.8125, "std": 0.025}, per_class={"anger": 0.7}, unit="fraction"))
    assert (one.accuracy_mean, one.accuracy_std, one.per_class) == (81.25, 2.5, {"anger": 70.0})
    assert len(parse_results({"results": [_result(), _synthetic()]})) == 2
    bad = [
        ({k: v for k, v in _result().items() if k != "synthetic"}, r"lacks required field\(s\) \['synthetic'\]"),
        (_result(synthetic="no"), "synthetic must be true or false"),
        (_result(accuracy={"mean": 0.81, "std": 0.02}), "looks like a fraction"),
        (_result(accuracy={"mean": 181.0, "std": 1.0}), r"\[0, 100\]"),
        (_result(n_folds=0), "n_folds must be an integer >= 1"),
        (_result(per_class={"joy": 50.0}), r"per_class names \['joy'\] are not the model's classes"),
        (_result(extra=1), r"unknown field\(s\) \['extra'\]"),
        ([], "non-empty list"),
    ]
    for data, message in bad:
        with pytest.raises(ResultsFormatError, match=message):
            parse_results(data, label_names=afnetm_timm.EXPRESSION_NAMES)
