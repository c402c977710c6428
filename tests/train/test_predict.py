"""Prediction from scans or images, model loading, and the ``afnetm predict`` / ``afnetm explain`` commands."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch

import afnetm_timm  # noqa: F401  (registers the models)
from afnetm_timm.data import preprocess_scan, read_scan, synthetic_face_scan
from afnetm_timm.data.formats.mesh import write_mesh
from afnetm_timm.demo import demo_input
from afnetm_timm.hub.checkpoint import save_checkpoint
from afnetm_timm.models.afnet_m import AFNetM
from afnetm_timm.packing import EXPRESSION_NAMES
from afnetm_timm.train.predict import (
    ALL_ONES_MASK,
    ImageSample,
    label_names,
    load_model,
    model_input,
    predict,
    sample_from_images,
    sample_from_scan,
)
from afnetm_timm.train.predict_cli import add_explain_command, add_predict_command, resolve_target

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A synthetic scan as .obj, its preprocessed images as PNGs, and a checkpoint of a seeded afnet_m."""
    root = tmp_path_factory.mktemp("predict")
    scan = synthetic_face_scan("surprise", 1.0, identity_seed=1, n_points=3000, texture_size=128)
    paths = {"scan": write_mesh(scan, root / "face.obj")["mesh"]}
    sample = preprocess_scan(read_scan(paths["scan"]), size=SIZE)
    paths["texture"], paths["depth"], paths["mask"] = root / "texture.png", root / "depth.png", root / "mask.png"
    assert cv2.imwrite(str(paths["texture"]), cv2.cvtColor(sample.texture, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(paths["depth"]), sample.depth[..., 0])  # 8-bit grey
    assert cv2.imwrite(str(paths["mask"]), np.round(sample.mask * 255).astype(np.uint8))
    torch.manual_seed(0)
    model = timm.create_model("afnet_m", num_classes=6).eval()
    paths["checkpoint"] = save_checkpoint(model, root / "afnet_m.safetensors")
    return paths


@pytest.fixture(scope="module")
def sample(files):
    return sample_from_scan(files["scan"], size=SIZE)


@pytest.fixture(scope="module")
def model(files):
    return load_model(files["checkpoint"])


def _softmax(model, sample) -> np.ndarray:
    with torch.no_grad():
        return model(demo_input(sample, model.pretrained_cfg)).softmax(-1)[0].numpy()


# --- samples -------------------------------------------------------------------------------------


def test_sample_from_scan(files, sample):
    assert sample.texture.shape == (SIZE, SIZE, 3) and sample.texture.dtype == np.uint8
    assert sample.depth.shape == (SIZE, SIZE, 3)
    assert sample.mask.shape == (SIZE, SIZE) and sample.mask.min() >= 0 and sample.mask.max() <= 1
    direct = preprocess_scan(read_scan(files["scan"]), size=SIZE)
    np.testing.assert_array_equal(sample.texture, direct.texture)
    np.testing.assert_array_equal(sample.depth, direct.depth)


def test_sample_from_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        sample_from_scan(tmp_path / "missing.obj", size=SIZE)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a scan")
    with pytest.raises(ValueError, match="notes.txt"):
        sample_from_scan(bad, size=SIZE)
    with pytest.raises(ValueError, match="multiple of 32"):
        sample_from_scan(bad, size=50)


def test_sample_from_images_round_trip(files, sample):
    """Images written with cv2.imwrite read back as the sample (RGB order, grey depth → 3 channels)."""
    images = sample_from_images(files["texture"], files["depth"], files["mask"], size=SIZE)
    assert isinstance(images, ImageSample)
    np.testing.assert_array_equal(images.texture, sample.texture)
    np.testing.assert_array_equal(images.depth, sample.depth)
    np.testing.assert_allclose(images.mask, sample.mask, atol=0.5 / 255)
    assert images.mask_source == str(files["mask"])
    assert images.sources == {k: str(files[k]) for k in ("texture", "depth", "mask")}


def test_sample_from_images_formats(files, sample, tmp_path):
    """16-bit grey and 3-channel depth images, a {0, 1} 8-bit mask, resizing, and the all-ones default."""
    depth16 = tmp_path / "depth16.png"
    assert cv2.imwrite(str(depth16), sample.depth[..., 0].astype(np.uint16) * 257)
    depth_rgb = tmp_path / "depth_rgb.png"  # channels differ: RGB order must survive
    rgb = np.stack([sample.depth[..., 0], sample.depth[..., 0] // 2, 255 - sample.depth[..., 0]], axis=-1)
    assert cv2.imwrite(str(depth_rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    mask01 = tmp_path / "mask01.png"
    assert cv2.imwrite(str(mask01), (sample.mask > 0.5).astype(np.uint8))

    from16 = sample_from_images(files["texture"], depth16, mask01, size=SIZE)
    assert from16.depth.dtype == np.float32 and from16.depth.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(from16.depth, sample.depth / 255.0, atol=1e-6)
    np.testing.assert_array_equal(from16.mask, (sample.mask > 0.5).astype(np.float32))
    np.testing.assert_array_equal(sample_from_images(files["texture"], depth_rgb, size=SIZE).depth, rgb)

    no_mask = sample_from_images(files["texture"], files["depth"], size=SIZE)
    assert no_mask.mask_source == ALL_ONES_MASK
    assert no_mask.mask.dtype == np.float32 and np.all(no_mask.mask == 1.0)

    big = {}
    for name, image in (("texture", cv2.cvtColor(sample.texture, cv2.COLOR_RGB2BGR)), ("depth", sample.depth[..., 0]),
                        ("mask", np.round(sample.mask * 255).astype(np.uint8))):
        big[name] = tmp_path / f"big_{name}.png"
        assert cv2.imwrite(str(big[name]), cv2.resize(image, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST))
    resized = sample_from_images(big["texture"], big["depth"], big["mask"], size=SIZE)
    assert resized.texture.shape == (SIZE, SIZE, 3) and resized.depth.shape == (SIZE, SIZE, 3)
    assert resized.mask.shape == (SIZE, SIZE) and resized.mask.min() >= 0 and resized.mask.max() <= 1
    np.testing.assert_array_equal(resized.texture, sample.texture)  # 2x nearest up, area down: exact


def test_sample_from_images_errors(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        sample_from_images(tmp_path / "nothere.png", files["depth"], size=SIZE)
    with pytest.raises(FileNotFoundError, match="nomask.png"):
        sample_from_images(files["texture"], files["depth"], tmp_path / "nomask.png", size=SIZE)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a PNG")
    with pytest.raises(ValueError, match="junk.png"):
        sample_from_images(files["texture"], junk, size=SIZE)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        sample_from_images(empty, files["depth"], size=SIZE)
    small = tmp_path / "small_depth.png"
    assert cv2.imwrite(str(small), np.zeros((32, 48), np.uint8))
    with pytest.raises(ValueError, match="small_depth.png") as info:
        sample_from_images(files["texture"], small, size=SIZE)
    assert str(files["texture"]) in str(info.value) and "32x48" in str(info.value)
    with pytest.raises(ValueError, match="multiple of 32"):
        sample_from_images(files["texture"], files["depth"], size=100)


# --- models and prediction -------------------------------------------------------------------------


def test_predict_from_checkpoint_equals_softmax(files, sample, model):
    torch.manual_seed(0)
    original = timm.create_model("afnet_m", num_classes=6).eval()  # what the checkpoint holds
    assert isinstance(model, AFNetM) and not model.training
    probs = predict(model, sample)
    assert list(probs) == list(EXPRESSION_NAMES)
    assert all(isinstance(p, float) for p in probs.values())
    np.testing.assert_allclose(list(probs.values()), _softmax(original, sample), atol=1e-6)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_from_images_equals_sample(files, sample, model):
    images = sample_from_images(files["texture"], files["depth"], files["mask"], size=SIZE)
    from_images, from_sample = predict(model, images), predict(model, sample)
    assert list(from_images) == list(from_sample)
    np.testing.assert_allclose(list(from_images.values()), list(from_sample.values()), atol=1e-5)


def test_predict_restores_train_mode_and_uses_eval(sample, model):
    torch.manual_seed(2)
    m = timm.create_model("afnet_m_2d", num_classes=6)
    m.train()
    probs = predict(m, sample)
    assert m.training and all(x.training for x in m.modules())
    m.eval()
    np.testing.assert_allclose(list(probs.values()), _softmax(m, sample), atol=1e-6)
    x = model_input(sample, m.pretrained_cfg)
    assert x.shape == (1, 7, SIZE, SIZE) and x.dtype == torch.float32


def test_label_names_from_checkpoint(files, sample, tmp_path):
    torch.manual_seed(0)
    m = timm.create_model("afnet_m_3d", num_classes=3)
    path = save_checkpoint(m, tmp_path / "three.safetensors", label_names=["low", "mid", "high"])
    loaded = load_model(path)
    assert label_names(loaded) == ["low", "mid", "high"]
    assert list(predict(loaded, sample)) == ["low", "mid", "high"]
    assert label_names(timm.create_model("afnet_m_2d", num_classes=4)) == ["class_0", "class_1", "class_2", "class_3"]


def test_load_model_names(files, sample, model, tmp_path):
    m = load_model("afnet_m_2d")
    assert isinstance(m, AFNetM) and not m.training and m.modalities == "texture"
    from afnetm_timm.hub.export import export_checkpoint

    folder = export_checkpoint(files["checkpoint"], tmp_path / "export").path
    local = load_model(f"local-dir:{folder}")
    np.testing.assert_allclose(list(predict(local, sample).values()), list(predict(model, sample).values()), atol=1e-6)


def test_load_model_errors(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")
    pt = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    with pytest.raises(ValueError, match="weights.pt"):
        load_model(pt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeError, match="garbage.safetensors"):
        load_model(garbage)
    with pytest.raises(ValueError, match="no_such_model"):
        load_model("no_such_model")
    with pytest.raises(ValueError, match="not an AFNet-M"):
        load_model("resnet10t")


# --- command line ---------------------------------------------------------------------------------


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="afnetm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_predict_command(sub)
    add_explain_command(sub)
    args = parser.parse_args(argv)
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_predict_json_from_scan(files, sample, model, capsys):
    rc, out, err = _cli(["predict", str(files["scan"]), "--model", str(files["checkpoint"]), "--size", str(SIZE),
                         "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["input"]["scan"] == str(files["scan"])
    np.testing.assert_allclose(list(result["probabilities"].values()), list(predict(model, sample).values()),
                               atol=1e-6)
    assert result["prediction"] == max(result["probabilities"], key=result["probabilities"].get)


def test_cli_predict_images_without_mask_says_so(files, capsys):
    rc, out, err = _cli(["predict", "--model", str(files["checkpoint"]), "--texture", str(files["texture"]),
                         "--depth", str(files["depth"]), "--size", str(SIZE)], capsys)
    assert rc == 0, err
    assert "all-ones" in out and "prediction:" in out
    for name in EXPRESSION_NAMES:
        assert name in out
    rc, out, err = _cli(["predict", "--model", str(files["checkpoint"]), "--texture", str(files["texture"]),
                         "--depth", str(files["depth"]), "--size", str(SIZE), "--json"], capsys)
    assert rc == 0 and json.loads(out)["input"]["mask"] == ALL_ONES_MASK


def test_cli_explain_writes_png(files, tmp_path, capsys):
    out_png = tmp_path / "panel" / "explain.png"
    rc, out, err = _cli(["explain", "--model", str(files["checkpoint"]), "--texture", str(files["texture"]),
                         "--depth", str(files["depth"]), "--mask", str(files["mask"]), "--size", str(SIZE),
                         "--out", str(out_png), "--target", "HA", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["target"] == "happiness" and result["branches"] == ["texture", "depth"]
    assert result["out"] == str(out_png)
    image = cv2.imread(str(out_png))
    assert image is not None and image.ndim == 3 and image.shape[0] > 100

    out_scan = tmp_path / "scan.png"
    rc, out, err = _cli(["explain", str(files["scan"]), "--model", "afnet_m_3d", "--size", str(SIZE),
                         "--out", str(out_scan)], capsys)
    assert rc == 0, err
    assert "panel:" in out and cv2.imread(str(out_scan)) is not None


@pytest.mark.parametrize("case", ["missing_scan", "missing_texture", "junk_depth", "sizes", "pt_model",
                                  "missing_model", "both_inputs", "no_inputs", "bad_size", "bad_target", "jpg_out"])
def test_cli_bad_inputs(case, files, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((32, 32), np.uint8))
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    ckpt, tex, dep = str(files["checkpoint"]), str(files["texture"]), str(files["depth"])
    cases = {
        "missing_scan": (["predict", str(tmp_path / "gone.obj"), "--model", ckpt], "gone.obj"),
        "missing_texture": (["predict", "--model", ckpt, "--texture", str(tmp_path / "t.png"), "--depth", dep], "t.png"),
        "junk_depth": (["explain", "--model", ckpt, "--texture", tex, "--depth", str(junk)], "junk.png"),
        "sizes": (["predict", "--model", ckpt, "--texture", tex, "--depth", str(small)], "small.png"),
        "pt_model": (["predict", "--model", str(pt), "--texture", tex, "--depth", dep], "model.pt"),
        "missing_model": (["explain", "--model", str(tmp_path / "m.safetensors"), "--texture", tex, "--depth", dep],
                          "m.safetensors"),
        "both_inputs": (["predict", str(files["scan"]), "--model", ckpt, "--texture", tex, "--depth", dep], "either"),
        "no_inputs": (["predict", "--model", ckpt, "--texture", tex], "--depth"),
        "bad_size": (["predict", "--model", ckpt, "--texture", tex, "--depth", dep, "--size", "70"], "--size"),
        "bad_target": (["explain", "--model", ckpt, "--texture", tex, "--depth", dep, "--target", "joyful"], "joyful"),
        "jpg_out": (["explain", "--model", ckpt, "--texture", tex, "--depth", dep, "--out", str(tmp_path / "e6.jpg")],
                    "e6.jpg: --out is written as PNG"),
    }
    argv, expected = cases[case]
    if "--size" not in argv:
        argv = [*argv, "--size", str(SIZE)]
    out_png = tmp_path / "never.png"
    if argv[0] == "explain" and "--out" not in argv:
        argv = [*argv, "--out", str(out_png)]
    rc, out, err = _cli(argv, capsys)
    assert rc != 0
    assert expected in err and err.startswith(f"afnetm {argv[0]}: ")
    assert "Traceback" not in err and out == ""
    assert not out_png.exists()


def test_resolve_target():
    labels = list(EXPRESSION_NAMES)
    assert resolve_target(None, labels) is None
    assert resolve_target("3", labels) == resolve_target("happiness", labels) == resolve_target("HA", labels) == 3
    assert resolve_target("Surprise", labels) == resolve_target("su", labels) == 5
    assert resolve_target("high", ["low", "high"]) == 1
    for bad in ("6", "-1", "joy"):
        with pytest.raises(ValueError, match="--target"):
            resolve_target(bad, labels)
    with pytest.raises(ValueError):
        resolve_target("HA", ["low", "high"])
