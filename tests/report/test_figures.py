"""calcimg.report.figures and the result readers, on the `test` phantom preset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from calcimg.report import (
    describe_lesion,
    figures,
    lesion_table,
    load_results,
    measure_study,
    series_status,
)
from phantom_batch import make_phantom_batch

OPTIONAL = ("pattern", "evidence", "lobulation", "septation", "linearity", "rim_smoothness", "lobe_count",
            "loculus_count", "fluid_level", "fluid_level_count", "fluid_level_angle_deg")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """(studies of the test preset, `calcimg extract` output of them), made once per session."""
    return make_phantom_batch(tmp_path_factory)


def texts(fig: Figure) -> str:
    """Every text drawn on the figure (titles, labels, annotations, legends, tables)."""
    from matplotlib.table import Table
    from matplotlib.text import Text

    cells = [c.get_text().get_text() for t in fig.findobj(Table) for c in t.get_celld().values()]
    return "\n".join([t.get_text() for t in fig.findobj(Text)] + cells)


def legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for leg in fig.findobj(lambda a: a.__class__.__name__ == "Legend") for t in leg.get_texts()]


@pytest.fixture(scope="module")
def ct(phantom):
    view = measure_study(phantom[0] / "ct_supine")[0]
    assert view.ok and view.rows
    return view


@pytest.fixture(scope="module")
def dx(phantom):
    views = [v for v in measure_study(phantom[0] / "dx_hip") if v.ok]
    return views[0]


@pytest.fixture(scope="module")
def results(phantom):
    return load_results(phantom[1])


def strip(rows):
    return [{k: v for k, v in r.items() if k not in OPTIONAL and not k.startswith("score_")} for r in rows]


def image_axes(fig):
    return [ax for ax in fig.get_axes() if ax.get_images()]


@pytest.mark.parametrize("window", ["soft_tissue", "bone"])
def test_scan_overview_ct(ct, window):
    fig = figures.scan_overview(ct.scan, ct.seg, ct.rows, window=window)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert len(titles) == 3 and titles[0].startswith("axial slice") and "coronal MIP" in titles[2]
    level, width = figures.WINDOWS[window]
    assert f"W{width:.0f}/L{level:.0f} HU" in fig._suptitle.get_text()
    assert image_axes(fig)[0].get_images()[0].get_clim() == (level - width / 2, level + width / 2)
    labels = legend_labels(fig)
    if any(r.get("pattern") for r in ct.rows):
        assert {figures.plain(r["pattern"]) for r in ct.rows} <= set(labels)
    assert "(mm)" in image_axes(fig)[0].get_xlabel()
    assert "gravity" in texts(fig)


def test_scan_overview_radiograph_and_missing_columns(dx):
    fig = figures.scan_overview(dx.scan, dx.seg, strip(dx.rows))
    assert len(image_axes(fig)) == 1
    assert legend_labels(fig)[:2] == ["lesion 1", "lesion 2"]  # no pattern: coloured by lesion
    assert "pattern not available" in texts(fig)
    with pytest.raises(ValueError, match="window"):
        figures.scan_overview(dx.scan if dx.scan.kind == "ct" else _ct_only(), None, [], window="lung")


def _ct_only():
    from calcimg.scan import Scan

    return Scan(np.zeros((2, 4, 4), np.int16), (1.0, 1.0, 1.0), np.zeros(3), np.eye(3), "ct")


def test_lesion_gallery_ct_planes_at_physical_aspect(ct):
    fig = figures.lesion_gallery(ct.scan, ct.seg, ct.rows, max_lesions=2)
    axes = image_axes(fig)
    assert len(axes) == 6  # 2 lesions x axial, coronal, sagittal
    assert [ax.get_title().split()[0] for ax in axes[:3]] == ["axial", "coronal", "sagittal"]
    sp = ct.scan.spacing
    for ax, (v, h) in zip(axes[:3], [(1, 2), (0, 2), (0, 1)], strict=True):
        im = ax.get_images()[0]
        rows, cols = im.get_array().shape
        x0, x1, y0, y1 = im.get_extent()
        assert abs(x1 - x0) == pytest.approx(cols * sp[h])
        assert abs(y1 - y0) == pytest.approx(rows * sp[v])
        assert ax.get_aspect() == 1.0
    words = texts(fig)
    assert "Lesion 1" in words and "Lesion 2" in words and f"first 2 of {len(ct.rows)}" in words
    assert "max diameter" in words and " mm" in words
    # supine CT: gravity points posterior, in the axial and sagittal planes, through the coronal
    assert "gravity ⊥ this plane" in words


def test_lesion_gallery_degrades_without_optional_columns_and_gravity(ct):
    import copy

    scan = copy.copy(ct.scan)
    scan.gravity = None
    fig = figures.lesion_gallery(scan, ct.seg, strip(ct.rows), max_lesions=1, window="soft_tissue")
    words = texts(fig)
    assert "gravity unknown" in words
    assert "pattern: not available" in words and "evidence: not available" in words
    assert words.count("not available") >= 1 + len(figures.DESCRIPTOR_COLUMNS)


def test_lesion_gallery_draws_a_given_fluid_interface(ct):
    """A horizontal interface (normal along gravity) through the centroid of lesion 1."""
    scan, seg = ct.scan, ct.seg
    box = seg.boxes[0]
    centre = np.argwhere(seg.labels[box] == 1).mean(axis=0) + [b.start for b in box]
    point = scan.index_to_lps(centre)
    normal = scan.gravity_lps
    fig = figures.lesion_gallery(scan, seg, ct.rows, max_lesions=1, interfaces={1: [(point, normal)]})
    lines = [ln for ax in image_axes(fig) for ln in ax.get_lines() if ln.get_color() == figures._FLUID_COLOUR]
    assert len(lines) == 2  # axial and sagittal cut the horizontal plane; coronal lies in it
    assert "fluid-level interface" in legend_labels(fig)


def test_lesion_gallery_radiograph(dx):
    fig = figures.lesion_gallery(dx.scan, dx.seg, dx.rows)
    assert len(image_axes(fig)) == min(8, len(dx.rows))
    assert all(ax.get_title() == "crop" for ax in image_axes(fig))


def test_fluid_interfaces_is_a_dict(ct):
    found = figures.fluid_interfaces(ct.scan, ct.seg)
    assert isinstance(found, dict)
    for planes in found.values():
        for point, normal in planes:
            assert point.shape == (3,) and normal.shape == (3,)


def test_load_results_and_series_status(results, phantom):
    import csv

    with open(phantom[1] / "lesions.csv", newline="") as fp:
        n = sum(1 for _ in csv.DictReader(fp))
    assert len(results.lesions) == n > 0
    assert set(results.series["status"]) == {"ok", "error", "skipped"}
    table = series_status(results)
    assert table["status"].iloc[0] == "error"  # failures first
    assert table["overlay"].str.contains('href="file://').any()
    key = results.lesions["series_key"].iloc[0]
    assert results.overlay_path(key).exists()
    with pytest.raises(FileNotFoundError, match=r"series\.csv"):
        load_results(phantom[0])


def test_batch_status_table(results):
    fig = figures.batch_status_table(results)
    words = texts(fig)
    assert "truncated pixel data" in words and "skipped" in words
    assert "series by status" in words
    ok = results.series.copy()
    ok = ok[ok["status"] != "error"]
    fig = figures.batch_status_table(type(results)(results.out_dir, results.lesions, ok, results.dictionary))
    assert "no failures" in texts(fig)


def test_feature_distributions(results):
    df = results.lesions
    fig = figures.feature_distributions(df, by="pattern")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_title()]
    assert titles[:4] == ["lobulation", "septation", "linearity", "rim smoothness"]
    if "pattern" in df and df["pattern"].notna().any():
        names = {figures.plain(p) for p in df["pattern"].dropna()}
        assert {lab.rsplit(" (", 1)[0] for lab in legend_labels(fig)} == names
    fig = figures.feature_distributions(df.drop(columns=[c for c in OPTIONAL if c in df]), by="pattern")
    assert "not available" in texts(fig)
    assert legend_labels(fig) == [f"all lesions ({len(df)})"]


def test_lobulation_linearity_scatter(results):
    df = results.lesions
    fig = figures.lobulation_linearity_scatter(df)
    ax = fig.get_axes()[0]
    assert "lobulation" in ax.get_xlabel() and "linearity" in ax.get_ylabel()
    if "lobulation" in df:
        assert sum(len(c.get_offsets()) for c in ax.collections) == int(
            (df["lobulation"].notna() & df["linearity"].notna()).sum())
        assert "marker: ct" in legend_labels(fig)
    fig = figures.lobulation_linearity_scatter(df.drop(columns=["lobulation"], errors="ignore"))
    assert "lobulation not available" in texts(fig)


def test_tables_and_words(ct):
    table = lesion_table(ct.rows)
    assert len(table) == len(ct.rows) and "max diameter (mm)" in table.columns
    table = lesion_table(strip(ct.rows))
    assert (table["lobulation"] == "not available").all()
    text = describe_lesion(strip(ct.rows)[0])
    assert text.startswith("**Lesion 1**: pattern not available") and "Evidence: not available" in text


def test_import_calcimg_report_stays_light():
    code = ("import sys, calcimg, calcimg.report; "
            "print(sorted(m for m in ('matplotlib', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
