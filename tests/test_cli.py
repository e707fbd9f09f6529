"""The command line as a user runs it: ``python -m xaikit ...`` in a subprocess on the shipped files and model."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import xaikit
from xaikit.checkpoint import load_checkpoint
from xaikit.cli import EXIT_CODES, main
from xaikit.data.preprocess import AspectRatioWarning
from xaikit.inference import content_id
from xaikit.io import read_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
MODEL = SAMPLES / "models" / "phantom_small_cnn.pt"
PNG = SAMPLES / "images" / "img00000.png"
DICOM = SAMPLES / "dicom" / "cxr_monochrome1.dcm"
VOLUME = SAMPLES / "dicom" / "ct_volume_multiframe.dcm"


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "xaikit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Three rows of the shipped manifest (with its patient ids), paths made absolute."""
    table = pd.read_csv(SAMPLES / "manifest.csv", dtype=str, keep_default_na=False).iloc[:3]
    table["image_path"] = [str(SAMPLES / p) for p in table["image_path"]]
    table = table[["image_path", "label", "patient_id", "image_id"]]
    path = tmp_path_factory.mktemp("manifest") / "cohort.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def explained(tmp_path_factory, manifest) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("explained")
    proc = _run("explain", str(MODEL), str(manifest), str(DICOM), str(VOLUME), "--method", "gradcam",
                "--method", "gradient", "--out", str(out), "--no-progress", "--manifest-root", str(SAMPLES))
    return out, proc


def _reference_map(path: Path, method: str, plane: int | None = None) -> np.ndarray:
    ckpt = load_checkpoint(MODEL)
    image = read_image(path)
    array = image.array if plane is None else image.array[plane]
    x = ckpt.preprocess(xaikit.io.MedicalImage(array, window=image.window))[0][None]
    return xaikit.saliency.explain(ckpt.model, x, method).maps[0].numpy()


def test_explain_writes_every_output(explained, manifest):
    out, proc = explained
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "explanations.csv")
    assert len(table) == 5 * 2  # 3 manifest rows + 1 DICOM + the volume's middle slice, x 2 methods
    assert set(table["method"]) == {"gradcam", "gradient"}
    assert table.loc[table["item"].str.startswith("0000"), "label"].notna().sum() == 2 * 3  # manifest labels kept
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds["slice"].fillna(-1).astype(int)) == [-1, -1, -1, -1, 12]  # 24 frames -> middle is 12
    for item in preds["item"]:
        for method in ("gradcam", "gradient"):
            assert (out / "overlays" / f"{item}__{method}.png").stat().st_size > 0
            assert np.load(out / "maps" / f"{item}__{method}.npy").shape == (128, 128)
    page = (out / "index.html").read_text()
    assert page.count("<img ") == 10 and "predictions.csv" in page


def test_explain_maps_and_predictions_match_the_library(explained):
    out, _ = explained
    preds = pd.read_csv(out / "predictions.csv").set_index("source_sha256")
    for path, plane in ((PNG, None), (DICOM, None), (VOLUME, 12)):
        row = preds.loc[content_id(path)]
        for method in ("gradcam", "gradient"):
            got = np.load(out / "maps" / f"{row['item']}__{method}.npy")
            np.testing.assert_allclose(got, _reference_map(path, method, plane), rtol=1e-5, atol=1e-7)
    ckpt = load_checkpoint(MODEL)
    x = ckpt.preprocess(read_image(DICOM))[0][None]
    probs = torch.softmax(ckpt.model(x).double(), 1)[0].detach().numpy()
    row = preds.loc[content_id(DICOM)]
    np.testing.assert_allclose([row["prob_normal"], row["prob_pneumonia"]], probs, rtol=1e-6)
    # the overlay is at the original image's resolution, not the model's 128 x 128, under its title band
    overlay = read_image(out / "overlays" / f"{row['item']}__gradcam.png", rgb="keep")
    height, width = read_image(DICOM).shape
    assert overlay.shape[-1] == width and height < overlay.shape[-2] < 1.2 * height


def test_no_identifier_in_any_output(explained, manifest):
    out, proc = explained
    table = pd.read_csv(manifest, dtype=str)
    secrets = [*table["patient_id"], *table["image_id"], "cxr_monochrome1", "ct_volume", "data_samples",
               manifest.stem, str(SAMPLES)]
    for path in out.rglob("*"):
        assert not any(s in str(path.relative_to(out)) for s in secrets), path
        if path.suffix in (".csv", ".html"):
            text = path.read_text()
            assert not [s for s in secrets if s in text], path
    assert not [s for s in secrets if s in proc.stdout]


def test_rerun_resumes_from_the_cache(explained, manifest):
    out, _ = explained
    cached = sorted((out / ".cache").rglob("*.pt"))
    assert len(cached) == 10
    stamps = [p.stat().st_mtime_ns for p in cached]
    before = pd.read_csv(out / "explanations.csv")
    code = main(["explain", str(MODEL), str(manifest), str(DICOM), str(VOLUME), "--method", "gradcam",
                 "--method", "gradient", "--out", str(out), "--no-progress", "--trust-manifest"])
    assert code == 0
    assert [p.stat().st_mtime_ns for p in sorted((out / ".cache").rglob("*.pt"))] == stamps  # nothing recomputed
    pd.testing.assert_frame_equal(pd.read_csv(out / "explanations.csv"), before)


def test_a_manifest_pointing_outside_its_folder_is_refused_with_the_flags_to_use(manifest, capsys):
    code = main(["predict", str(MODEL), str(manifest), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "3 of 3 rows are bad" in err and "leaves the dataset root" in err
    assert "--manifest-root DIR" in err and "--trust-manifest" in err


def test_predict_prints_a_csv():
    proc = _run("predict", str(MODEL), str(PNG), str(VOLUME), "--slices", "all", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(io.StringIO(proc.stdout))
    assert len(table) == 1 + 24 and list(table["slice"].iloc[1:]) == list(range(24))
    np.testing.assert_allclose(table[["prob_normal", "prob_pneumonia"]].sum(axis=1), 1.0)
    assert (table["pred_class"] == np.where(table["prob_pneumonia"] > 0.5, "pneumonia", "normal")).all()


def test_bare_command_prints_help_and_version():
    proc = _run()
    assert proc.returncode == 0 and "predict" in proc.stdout and "explain" in proc.stdout
    assert _run("--version").stdout.strip() == f"xaikit {xaikit.__version__}"


def test_help_lists_the_demo_stages(capsys):
    from xaikit.demo import STAGES

    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(STAGES) in text


@pytest.mark.parametrize("argv, code, message", [
    (["predict", str(MODEL), "no/such/file.png"], "input", "no such file or folder"),
    (["predict", str(PNG), str(PNG)], "model", "Only load files you trust"),
    (["explain", str(MODEL), str(PNG), "--method", "gradcamm", "--out", "x"], "usage", "gradcamm: not known"),
    (["explain", str(MODEL), str(PNG), "--out", "x"], "usage", "name at least one --method"),
    (["explain", str(MODEL), str(PNG), "--method", "gradcam", "--target", "label", "--out", "x"], "usage",
     "1 of 1 image(s) have no label"),
    (["explain", str(MODEL), str(PNG), "--method", "gradcam", "--target", "7", "--out", "x"], "usage",
     "class index 0..1"),
    (["predict", str(MODEL), str(VOLUME), "--slices", "99"], "input", "slice index 0..23"),
])
def test_errors_say_what_to_do_and_set_the_exit_code(argv, code, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == EXIT_CODES[code]
    assert message in capsys.readouterr().err


def test_unreadable_inputs_are_listed_or_skipped(tmp_path, capsys):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(DICOM.read_bytes()[:400])
    assert main(["predict", str(MODEL), str(PNG), str(bad), "--no-progress"]) == EXIT_CODES["input"]
    assert "1 of 2 input file(s) cannot be read" in capsys.readouterr().err
    assert main(["predict", str(MODEL), str(PNG), str(bad), "--skip-bad", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped unreadable input" in captured.err and len(pd.read_csv(io.StringIO(captured.out))) == 1


def test_a_folder_is_searched_and_non_images_are_counted(tmp_path, capsys):
    (tmp_path / "series").mkdir()
    for k in range(3):
        (tmp_path / "series" / f"IM{k:04d}").write_bytes(DICOM.read_bytes())  # DICOM without extension
    (tmp_path / "series" / "notes.txt").write_text("not an image")
    assert main(["predict", str(MODEL), str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    # warnings as one clean line each: no source file, no code line
    lines = [line for line in captured.err.splitlines() if "left out" in line]
    assert lines == [f"xaikit predict: warning (UserWarning): {tmp_path}: left out 1 file(s) that are not "
                     "images (by extension or content)."]
    assert ".py:" not in captured.err and "collect_sources(" not in captured.err
    table = pd.read_csv(io.StringIO(captured.out))
    assert len(table) == 3 and table["source_sha256"].nunique() == 1 and table["item"].nunique() == 3


def test_overlay_is_transparent_at_zero_and_sits_on_the_original_grid():
    from xaikit.data import Preprocess
    from xaikit.inference import overlay_rgb

    image = xaikit.io.MedicalImage(np.linspace(0, 1, 60 * 90, dtype=np.float32).reshape(60, 90), window=(0.5, 1.0))
    pre = Preprocess(size=32, mode="letterbox")
    grey = np.repeat((image.display() * 255).round()[..., None], 3, axis=2)
    np.testing.assert_array_equal(overlay_rgb(image, np.zeros((32, 32)), pre), grey.astype(np.uint8))
    hot = overlay_rgb(image, np.ones((32, 32)), pre, alpha=1.0)  # a flat positive map: fully opaque reds
    assert hot.shape == (60, 90, 3) and (hot[..., 0] > hot[..., 2]).all()


def test_planes_of_a_volume():
    from xaikit.errors import ArgumentError
    from xaikit.inference import planes

    volume = read_image(VOLUME)
    assert [k for k, _ in planes(volume)] == [12]
    assert [k for k, _ in planes(volume, "all")] == list(range(24))
    (k, plane), = planes(volume, 3)
    np.testing.assert_array_equal(plane.array, volume.array[3])
    assert plane.window == volume.window and plane.spacing == volume.spacing[1:]
    with pytest.raises(ArgumentError, match="slice index 0..23"):
        planes(volume, 24)


def _out_of_domain_png(folder: Path) -> Path:
    """A phantom radiograph turned into what the model never saw: inverted and stretched to 1.6:1."""
    from PIL import Image

    grey = np.asarray(Image.open(PNG).convert("L"))
    path = folder / "odd.png"
    Image.fromarray(255 - np.tile(grey, (1, 2))[:, :360]).save(path)
    return path


def test_predict_flags_inputs_outside_the_training_domain_once(tmp_path, capsys):
    from xaikit.domain import assess_domain

    odd = _out_of_domain_png(tmp_path)
    assert main(["predict", str(MODEL), str(PNG), str(odd), "--no-progress", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert list(table["in_domain"]) == [True, False]
    ckpt = load_checkpoint(MODEL)
    with pytest.warns(AspectRatioWarning):
        x = ckpt.prepare([read_image(PNG), read_image(odd)])
    np.testing.assert_allclose(table["domain_distance"], assess_domain(ckpt.model, x), atol=1e-4)
    warned = [line for line in err.splitlines() if "OutOfDomainWarning" in line]
    assert len(warned) == 1 and "xaikit predict: 1 of 2 input(s) are far" in warned[0]
    assert f"{table['domain_distance'][1]:.1f} times the threshold" in warned[0]
    stretched = [line for line in err.splitlines() if "AspectRatioWarning" in line]
    assert len(stretched) == 1 and "stretches 1 of 2 images (width x height: 360 x 224)" in stretched[0]


def test_explain_marks_the_domain_in_every_output(tmp_path, capsys):
    from PIL import Image

    odd = _out_of_domain_png(tmp_path)
    out = tmp_path / "out"
    assert main(["explain", str(MODEL), str(PNG), str(odd), "--method", "gradient", "--method", "input_x_gradient",
                 "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("OutOfDomainWarning") == 1 and "xaikit explain: 1 of 2 input(s)" in err
    for name in ("predictions.csv", "explanations.csv"):
        table = pd.read_csv(out / name)
        assert list(table.drop_duplicates("item")["in_domain"]) == [True, False], name
    page = (out / "index.html").read_text()
    far = pd.read_csv(out / "predictions.csv")["domain_distance"][1]
    assert f"OUT OF DOMAIN ({far:.1f}x threshold)" in page and page.count('class="domain in"') == 1
    assert "1 of 2 input(s) lie outside the model's training domain" in page
    # the overlay PNG carries its title band: dark red for the out-of-domain input, black for the other
    item = pd.read_csv(out / "predictions.csv")["item"]
    bands = [np.asarray(Image.open(out / "overlays" / f"{i}__gradient.png").convert("RGB"))[:12] for i in item]
    assert bands[0].max() > 200 and bands[1].max() > 200  # white text
    assert np.median(bands[0][..., 0]) == 0 and np.median(bands[1][..., 0]) == 150


MODEL_3D = SAMPLES / "models" / "phantom_cnn3d.pt"
NIFTI = SAMPLES / "nifti" / "volume.nii.gz"
SERIES = SAMPLES / "dicom" / "ct_series"


def test_a_3d_model_explains_nifti_and_dicom_series_as_volumes_with_maps_on_the_source_grid(tmp_path, capsys):
    """The notebook-07 path on the command line: each volume whole through the 3D model, each map written as
    NIfTI with the source file's affine and voxel order (a reoriented copy keeps its own)."""
    import nibabel as nib

    from xaikit.domain import assess_domain
    from xaikit.io import read_volume
    from xaikit.saliency import explain

    src = nib.load(NIFTI)
    flipped = tmp_path / "flipped.nii.gz"  # the same scan stored in another voxel order (x reversed)
    affine = src.affine.copy()
    affine[:, 3] = src.affine @ [src.shape[0] - 1, 0, 0, 1]
    affine[:, 0] = -src.affine[:, 0]
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj)[::-1], affine, src.header), flipped)
    out = tmp_path / "out"
    assert main(["explain", str(MODEL_3D), str(NIFTI), str(SERIES), str(flipped), "--method", "gradient",
                 "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 3 and preds["slice"].isna().all()  # one row per volume, the series folder is one
    ckpt = load_checkpoint(MODEL_3D)
    volumes = [read_volume(p) for p in (NIFTI, SERIES, flipped)]
    x = ckpt.prepare(volumes)
    np.testing.assert_allclose(preds["domain_distance"], assess_domain(ckpt.model, x), atol=1e-4)
    assert list(preds["in_domain"]) == list(assess_domain(ckpt.model, x) <= 1)
    assert err.count("OutOfDomainWarning") == (1 if (~preds["in_domain"]).any() else 0)
    for (k, row), volume, path in zip(preds.iterrows(), volumes, (NIFTI, SERIES, flipped)):
        stem = out / "maps" / f"{row['item']}__gradient"
        raw = np.load(f"{stem}.npy")
        assert raw.shape == (32, 32, 32)
        np.testing.assert_allclose(raw, explain(ckpt.model, x[k:k + 1], "gradient").maps[0].numpy(), rtol=1e-5,
                                   atol=1e-7)
        written = nib.load(f"{stem}.nii.gz")
        want = ckpt.preprocess.write_map(raw, volume, tmp_path / f"want{k}.nii.gz")  # notebook 07's call
        np.testing.assert_array_equal(written.get_fdata(), nib.load(want).get_fdata())
        if path.is_file():  # a NIfTI source: its own affine, shape and voxel order
            assert written.shape == nib.load(path).shape and np.allclose(written.affine, nib.load(path).affine)
        else:  # a DICOM series: the affine built on reading, on its grid
            back = read_volume(f"{stem}.nii.gz")
            assert back.shape == volume.shape and np.allclose(back.affine, volume.affine)
        assert (out / "overlays" / f"{row['item']}__gradient.png").stat().st_size > 0
    # the same map in two voxel orders: the flipped file's map is the original's, flipped back
    first, last = (nib.load(out / "maps" / f"{item}__gradient.nii.gz").get_fdata() for item in preds["item"][[0, 2]])
    np.testing.assert_allclose(last[::-1], first, atol=1e-6)
    assert "nii.gz" in (out / "index.html").read_text()


def test_a_3d_model_refuses_slices_and_2d_images(capsys):
    assert main(["predict", str(MODEL_3D), str(NIFTI), "--slices", "all", "--no-progress"]) == EXIT_CODES["usage"]
    assert "this checkpoint is a 3D model" in capsys.readouterr().err
    assert main(["predict", str(MODEL_3D), str(PNG), "--no-progress"]) == EXIT_CODES["input"]
    assert "not a volume; a 3D model explains volumes" in capsys.readouterr().err
