"""The same face written as BU-3DFE .wrl and as Bosphorus .bnt gives the same depth image."""
import numpy as np

from afnetm_timm.data import preprocess_scan, read_scan
from afnetm_timm.data.formats import write_bosphorus, write_bu3dfe
from tests.data.fixtures import make_sfm_scan, require_sfm


def test_bnt_and_wrl_of_one_face_give_the_same_depth(tmp_path) -> None:
    require_sfm()
    face = make_sfm_scan("surprise", 1.0, seed=7, landmark_scheme="ibug68")
    write_bu3dfe(face, tmp_path, "F0007_SU04WH_F3D")
    write_bosphorus(face, tmp_path, "bs007_E_SURPRISE_0")
    # both files hold the face in the same millimetre frame; give both the same landmarks, so the
    # pose fit is identical and only the file format (mesh vs ~0.76 mm range grid) differs
    wrl = read_scan(tmp_path / "F0007_SU04WH_F3D.wrl", landmarks=face.landmarks)
    bnt = read_scan(tmp_path / "bs007_E_SURPRISE_0.bnt", landmarks=face.landmarks)
    a = preprocess_scan(wrl, size=112, depth_dtype="float32")
    b = preprocess_scan(bnt, size=112, depth_dtype="float32")
    both = a.foreground & b.foreground
    assert both.sum() > 0.9 * max(a.foreground.sum(), b.foreground.sum())
    # The SFM mesh is coarse (3,448 vertices, a few mm apart); the nose-tip refinement that centres
    # the grid lands on a vertex for the mesh and on a 0.76 mm grid point for the .bnt, which shifts
    # the two images by about a millimetre. A format bug (units, flipped rows, mirrored uv) would
    # differ by tens of millimetres.
    diff_mm = np.abs(a.depth_mm[both] - b.depth_mm[both])
    assert np.median(diff_mm) < 1.0 and np.percentile(diff_mm, 95) < 3.0, (np.median(diff_mm), np.mean(diff_mm))
    assert np.abs(a.depth[both] - b.depth[both]).mean() < 0.03
    assert np.abs(a.mask - b.mask).mean() < 0.05
    texture_diff = np.abs(a.texture[both].astype(float) - b.texture[both].astype(float)).mean()
    assert texture_diff < 20, texture_diff
