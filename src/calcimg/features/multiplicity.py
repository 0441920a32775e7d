"""Multiplicity and distribution of a series' lesions (criteria-research 2.6 "Multiplicity /
distribution", 2.3 Li4 cluster-level alignment, table 3b "Ctx").

Some patterns are told apart less by any one deposit than by the company it keeps: cysticercosis
gives many similar rice grains lying parallel along the muscle fibres [TMCR7], phleboliths are
usually several [RIPE], calcified tuberculous nodes come in clusters and chains [PAN-TB], while a
calcific-tendinitis deposit or a calcified bursa is usually single. These columns describe, for each
lesion, the other lesions of the same series; they are computed once all of its lesions are
measured (`multiplicity_features`), from the per-lesion principal axis (`principal_axis`).
"""

from __future__ import annotations

import math

import numpy as np

from calcimg.lesion import Lesion

NAN = float("nan")

#: Two lesions are "alike in size" when their maximum diameters differ by at most this factor [est].
SIZE_FACTOR = 1.5
#: Two elongated lesions are "parallel" when their principal axes differ by at most this angle
#: (degrees) [est]; criteria-research 2.3 Li4 uses 15-20 degrees for paired and aligned structures.
PARALLEL_DEG = 20.0
#: A lesion has a principal axis worth comparing when its minor-to-major axis ratio is at most
#: this (an ellipse 1.5 times longer than wide) [est]: a round deposit has no direction.
ELONGATED_RATIO = 1.0 / 1.5
#: The cross-section of a lesion is measured when it is at least 1/0.6 (about 1.7) times longer
#: than wide [est]: a shorter one has no long axis to cut across.
TUBE_RATIO = 0.6
#: Neighbours: other lesions whose centroid lies within this distance (mm) of the lesion's
#: centroid [est] (a nodal chain, a venous plexus, a field of grains).
NEIGHBOUR_MM = 30.0

MULTIPLICITY_COLUMNS = (
    ("principal_axis_x", "", "Direction cosine of the lesion's longest axis along x (CT: LPS; radiograph: image columns); sign chosen so the largest component is positive"),
    ("principal_axis_y", "", "Direction cosine of the longest axis along y (CT: LPS; radiograph: image rows)"),
    ("principal_axis_z", "", "Direction cosine of the longest axis along z (CT: LPS); radiograph: empty"),
    ("axis_ratio", "", "sqrt(second / largest eigenvalue) of the voxel-centre covariance in mm, 0..1 (1 = no preferred direction)"),
    ("cross_section_ratio", "", "CT, elongated lesions (axis_ratio <= 0.6): sqrt(smallest / second eigenvalue) of the voxel-centre covariance, 0..1: ~1 round cross-section (rod, tube), small for a plate or sheet; empty otherwise"),
    ("series_lesion_count", "", "Lesions in the series (this one included)"),
    ("similar_lesion_count", "", "Other lesions of the series whose maximum diameter is within a factor 1.5 of this one's"),
    ("aligned_lesion_count", "", "Of the similar lesions, the elongated ones (axis ratio <= 2/3, as this one) whose principal axis is within 20 degrees of this one's"),
    ("neighbour_count", "", "Other lesions of the series whose centroid lies within 30 mm of this one's"),
)


def principal_axis(lesion: Lesion) -> dict:
    """The direction of a lesion's longest extent and how elongated it is.

    Columns
    -------
    principal_axis_x, principal_axis_y, principal_axis_z : float
        Unit eigenvector of the largest eigenvalue of the covariance of the lesion's voxel
        centres in physical mm (CT: patient LPS, so orientation and anisotropic spacing are taken
        into account; radiographs: the image plane, x along columns, y along rows, z empty). The
        sign is chosen so that the component of largest magnitude is positive (an axis has no
        sense). -1..1. Serves the alignment of cysticerci along the muscle fibres
        (criteria-research 2.3 Li4).
    axis_ratio : float
        sqrt(lambda_2 / lambda_1) of that covariance, 0..1 (the IBSI elongation of the voxel
        centres): 1 round, small for rods. Empty for a single voxel.
    cross_section_ratio : float
        CT: sqrt(lambda_3 / lambda_2), 0..1 (the least over the minor axis; IBSI flatness over
        elongation): about 1 when the cross-section across the longest axis is round (a tube,
        rod or ball), small for a plate or sheet. Serves arterial calcification, a tube that is a
        ring in cross-section (criteria-research 3a, Li column), against the sheets and plaques of
        calcinosis cutis (universalis, dermatomyositis). Radiographs: empty (one projection
        cannot tell a tube from a plate seen edge-on), and empty when the lesion is not elongated
        (axis_ratio > 0.6: no long axis to cut across).
    """
    idx = np.argwhere(lesion.mask)
    pts = lesion.index_to_physical(idx) if len(idx) else np.zeros((0, lesion.mask.ndim))
    out = {"principal_axis_x": NAN, "principal_axis_y": NAN, "principal_axis_z": NAN, "axis_ratio": NAN,
           "cross_section_ratio": NAN}
    if len(pts) < 2:
        return out
    if lesion.kind != "ct":
        pts = pts[:, ::-1]  # (row mm, column mm) -> (x along columns, y along rows)
    cov = np.cov(pts, rowvar=False)
    w, v = np.linalg.eigh(cov)
    axis = v[:, -1]
    if axis[np.argmax(np.abs(axis))] < 0:
        axis = -axis
    out["principal_axis_x"], out["principal_axis_y"] = float(axis[0]), float(axis[1])
    if len(axis) == 3:
        out["principal_axis_z"] = float(axis[2])
    out["axis_ratio"] = float(math.sqrt(max(w[-2], 0.0) / w[-1])) if w[-1] > 0 else NAN
    if len(axis) == 3 and w[1] > 0 and out["axis_ratio"] <= TUBE_RATIO:
        out["cross_section_ratio"] = float(math.sqrt(max(w[0], 0.0) / w[1]))
    return out


def _vectors(rows: list[dict], keys: tuple[str, ...]) -> np.ndarray:
    return np.array([[float(r.get(k, NAN)) if r.get(k) is not None else NAN for k in keys] for r in rows],
                    dtype=float).reshape(len(rows), len(keys))


def multiplicity_features(rows: list[dict]) -> None:
    """Add the multiplicity columns to every lesion row of one series (in place).

    Columns
    -------
    series_lesion_count : int
        n, the number of lesions in the series (>= 1). Context for every pattern.
    similar_lesion_count : int
        Other lesions j with max(D_i, D_j) / min(D_i, D_j) <= 1.5, D the maximum diameter (mm).
        0..n-1. Many similar deposits: cysticercosis (often hundreds [TMCR7]), phleboliths
        (usually several [RIPE]), calcinosis circumscripta; a tendinitis deposit or a bursa is
        usually single.
    aligned_lesion_count : int
        Of those, the ones that are elongated (axis_ratio <= 2/3) like lesion i and whose
        principal axes make an angle of at most 20 degrees with lesion i's: acos(|a_i . a_j|) <=
        20 degrees (criteria-research 2.3 Li4: cysticerci lie parallel along the muscle fibres;
        the circular variance of the axes is low). 0 when lesion i is not elongated. 0..n-1.
        On a radiograph the axes are those of the projections.
    neighbour_count : int
        Other lesions whose centroid lies within 30 mm of lesion i's (CT: 3D LPS distance;
        radiographs: image plane). 0..n-1. Clusters and chains: calcified nodes [PAN-TB],
        venous plexus phleboliths, fields of grains.
    """
    n = len(rows)
    if not n:
        return
    diam = _vectors(rows, ("max_diameter_mm",))[:, 0]
    axes = _vectors(rows, ("principal_axis_x", "principal_axis_y", "principal_axis_z"))
    ratio = _vectors(rows, ("axis_ratio",))[:, 0]
    cent = _vectors(rows, ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"))
    axes = np.nan_to_num(axes)  # a radiograph's z is empty: the plane's components remain
    cent = np.where(np.isfinite(cent).all(axis=0, keepdims=True), cent, 0.0)  # ditto for centroids
    others = ~np.eye(n, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        big, small = np.maximum.outer(diam, diam), np.minimum.outer(diam, diam)
        alike = others & np.isfinite(big) & (small > 0) & (big <= SIZE_FACTOR * small)
    elongated = np.isfinite(ratio) & (ratio <= ELONGATED_RATIO)
    cos = np.abs(axes @ axes.T)
    parallel = cos >= math.cos(math.radians(PARALLEL_DEG))
    aligned = alike & parallel & elongated[:, None] & elongated[None, :]
    dist = np.linalg.norm(cent[:, None, :] - cent[None, :, :], axis=2)
    near = others & (dist <= NEIGHBOUR_MM)
    for i, row in enumerate(rows):
        row["series_lesion_count"] = n
        row["similar_lesion_count"] = int(alike[i].sum())
        row["aligned_lesion_count"] = int(aligned[i].sum())
        row["neighbour_count"] = int(near[i].sum())
