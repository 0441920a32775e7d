"""End to end: `calcimg extract` and `calcimg info` on series written by the tests."""

import csv
from pathlib import Path

import numpy as np
import pytest

from calcimg.cli import main
from dicom_factory import ct_slices, write_series

SPACING = (1.0, 0.5, 0.5)
CENTRE_LPS = np.array([-10.0, 5.0, 112.0])
RADIUS = 4.0


def sphere_series(folder, *, patient_position="HFS", seed=0):
    """Soft tissue (40 HU) with one 300-HU sphere of radius 4 mm centred at CENTRE_LPS."""
    shape = (24, 48, 48)
    origin = np.array([-22.0, -7.0, 100.0])  # voxel [0,0,0]; axes (z, y, x) for an axial stack
    k, i, j = np.indices(shape)
    lps = np.stack([origin[0] + j * SPACING[2], origin[1] + i * SPACING[1], origin[2] + k * SPACING[0]], -1)
    inside = np.linalg.norm(lps - CENTRE_LPS, axis=-1) <= RADIUS
    rng = np.random.default_rng(seed)
    hu = np.where(inside, 300, 40) + rng.normal(0, 5, shape).round()
    dss = ct_slices(hu.astype(np.int16), spacing=SPACING, origin=origin, patient_position=patient_position)
    write_series(dss, folder, shuffle_seed=seed)
    return inside.sum() * np.prod(SPACING)


def read_csv(path):
    with open(path, newline="") as fp:
        return list(csv.DictReader(fp))


def test_extract_measures_a_sphere(tmp_path, capsys):
    voxel_volume = sphere_series(tmp_path / "in")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    lesions = read_csv(tmp_path / "out" / "lesions.csv")
    assert len(lesions) == 1
    row = lesions[0]
    assert row["lesion_id"] == "1" and row["kind"] == "ct"
    assert float(row["volume_mm3"]) == pytest.approx(voxel_volume)
    assert float(row["volume_mm3"]) == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.08)
    centroid = [float(row[f"centroid_{a}_mm"]) for a in "xyz"]
    np.testing.assert_allclose(centroid, CENTRE_LPS, atol=0.1)
    assert float(row["max_diameter_mm"]) == pytest.approx(2 * RADIUS, abs=1.0)
    assert float(row["mean_hu"]) == pytest.approx(300, abs=5)
    series = read_csv(tmp_path / "out" / "series.csv")
    assert len(series) == 1
    s = series[0]
    assert (s["status"], s["n_lesions"], s["shape"], s["gravity"]) == ("ok", "1", "24 48 48", "0 1 0")
    assert s["settings_hash"] and s["calcimg_version"]
    for name in ("data_dictionary.csv", "settings.toml"):
        assert (tmp_path / "out" / name).exists()
    out = capsys.readouterr().out
    assert "1 series ok, 0 failed" in out


def test_bad_series_becomes_an_error_row_and_the_batch_goes_on(tmp_path):
    sphere_series(tmp_path / "in" / "good")
    bad_paths = write_series(
        ct_slices(np.zeros((3, 8, 8), np.int16)), tmp_path / "in" / "bad", shuffle_seed=3, suffix=".dcm"
    )
    bad_paths[1].write_bytes(bad_paths[1].read_bytes()[:-20])  # truncated pixel data
    (tmp_path / "in" / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x07" * 64)
    code = main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    series = {r["source"].split("/")[-1]: r for r in read_csv(tmp_path / "out" / "series.csv")}
    assert series["good"]["status"] == "ok"
    assert series["bad"]["status"] == "error"
    assert bad_paths[1].name in series["bad"]["reason"] and "truncated" in series["bad"]["reason"]
    assert series["junk.dcm"]["status"] == "error"
    assert len(read_csv(tmp_path / "out" / "lesions.csv")) == 1


def test_outputs_carry_no_patient_identifiers(tmp_path):
    sphere_series(tmp_path / "in")
    main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet", "--seg"])
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert {f.suffix for f in files} >= {".csv", ".parquet", ".toml", ".log", ".json", ".png"}
    for f in files:  # tables, parquet, log, parts, overlays, and the DICOM SEG
        data = f.read_bytes()
        assert b"TEST^PATIENT" not in data and b"19700101" not in data and b"T0001" not in data, f


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["extract", str(tmp_path)])  # no --out
    assert info.value.code == 2
    assert main(["extract", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "in").mkdir()
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "in" / "out")]) == 2
    assert "inside input folder" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = 3\n")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--pipeline", str(bad)]) == 2
    assert "unknown key 'threshold'" in capsys.readouterr().err


def test_pipeline_settings_change_the_result(tmp_path):
    sphere_series(tmp_path / "in")
    toml = tmp_path / "high.toml"
    toml.write_text("threshold_hu = 400\n")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--pipeline", str(toml), "--quiet"]) == 0
    assert read_csv(tmp_path / "o" / "lesions.csv") == []
    assert "threshold_hu = 400.0" in (tmp_path / "o" / "settings.toml").read_text()


def test_info_lists_series_and_skipped_files(tmp_path, capsys):
    sphere_series(tmp_path / "in", patient_position="HFDL")
    (tmp_path / "in" / "README").write_text("not dicom")
    assert main(["info", str(tmp_path / "in"), "--tsv"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header, row = lines[0].split("\t"), lines[1].split("\t")
    rec = dict(zip(header, row, strict=True))
    assert rec["kind"] == "ct" and rec["files"] == "24" and rec["shape"] == "24x48x48"
    assert rec["gravity_lps"] == "1 0 0" and rec["position"] == "HFDL"
    assert "README: not a DICOM file" in out


PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_named_pipelines_load_and_document_every_key(tmp_path, capsys):
    import tomllib

    from calcimg.cli import resolve_pipeline
    from calcimg.settings import Settings

    names = sorted(p.stem for p in PIPELINES.glob("*.toml"))
    assert {"ct", "radiograph", "high_sensitivity"} <= set(names)
    for name in names:
        path = resolve_pipeline(name)
        assert path == PIPELINES / f"{name}.toml"
        settings = Settings.from_toml(path)
        keys = tomllib.loads(path.read_text())
        assert keys
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):  # every key has a comment line right above it (or its group)
            if line and not line.startswith("#"):
                j = i - 1
                while j >= 0 and lines[j] and not lines[j].startswith("#"):
                    j -= 1
                assert j >= 0 and lines[j].startswith("#"), f"{name}.toml: {line} is not documented"
        if name in ("ct", "radiograph"):  # the defaults, spelled out
            assert settings.hash == Settings().hash
    assert Settings.from_toml(resolve_pipeline("high_sensitivity")).threshold_hu < Settings().threshold_hu
    sphere_series(tmp_path / "in")
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--pipeline", "high_sensitivity",
                 "--quiet", "--workers", "0"]) == 0
    assert "threshold_hu = 100.0" in (tmp_path / "o" / "settings.toml").read_text()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('connectivity = "26"\n')
    assert main(["extract", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--pipeline", str(wrong)]) == 2
    assert "'connectivity' must be int" in capsys.readouterr().err


def test_extract_with_a_user_mask(tmp_path):
    """`--mask`: every label of a NIfTI label image is measured instead of the segmentation."""
    import SimpleITK as sitk

    hu = np.full((20, 30, 30), 40, np.int16)
    zz, yy, xx = np.indices(hu.shape)
    ball = (zz - 10) ** 2 + (yy - 15) ** 2 + (xx - 10) ** 2 <= 16
    hu[ball] = 400
    labels = np.zeros(hu.shape, np.uint8)
    labels[ball] = 7  # the user's label value
    labels[2:5, 20:25, 20:25] = 3  # a region the segmentation would never find (40 HU)
    for array, name in ((hu, "image.nii.gz"), (labels, "mask.nii.gz")):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing((0.8, 0.8, 1.5))
        img.SetOrigin((10.0, -20.0, 5.0))
        sitk.WriteImage(img, str(tmp_path / name))
    out = tmp_path / "out"
    code = main(["extract", str(tmp_path / "image.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"),
                 "--out", str(out), "--quiet", "--workers", "0"])
    assert code == 0
    rows = {r["label"]: r for r in read_csv(out / "lesions.csv")}
    assert set(rows) == {"3", "7"}
    assert float(rows["7"]["volume_mm3"]) == pytest.approx(ball.sum() * 0.8 * 0.8 * 1.5)
    assert float(rows["3"]["volume_mm3"]) == pytest.approx(3 * 5 * 5 * 0.8 * 0.8 * 1.5)
    assert float(rows["3"]["mean_hu"]) == pytest.approx(40)
    # a mask on another grid is an error row naming the file, not a crash
    bad = sitk.GetImageFromArray(labels[:, :, :20])
    sitk.WriteImage(bad, str(tmp_path / "bad.nii.gz"))
    code = main(["extract", str(tmp_path / "image.nii.gz"), "--mask", str(tmp_path / "bad.nii.gz"),
                 "--out", str(tmp_path / "out2"), "--quiet", "--workers", "0"])
    assert code == 1
    series = read_csv(tmp_path / "out2" / "series.csv")
    assert series[0]["status"] == "error" and "bad.nii.gz" in series[0]["reason"]
