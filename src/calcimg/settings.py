"""Pipeline settings: typed, documented, loaded from TOML, hashed for resumable batches."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every knob of a calcimg run. Each field is a key of a pipeline TOML file.

    Attributes
    ----------
    threshold_hu : float
        CT voxels at or above this value (HU) are calcium candidates (130 HU: the coronary-calcium
        convention, criteria-research section 1.0, grade A).
    min_volume_mm3 : float
        CT components smaller than this (mm^3) are noise and dropped.
    connectivity : int
        CT voxel connectivity for components: 6, 18 or 26.
    nonuniform_slices : str
        ``"resample"`` or ``"error"``: what loading does with irregular slice gaps.
    group_gap_mm : float
        Calcified components whose surface gap is at most this (mm) are one lesion (a tumoral
        calcinosis mass of many globules; criteria-research 2.0, an estimate).
    metal_hu : float
        Components whose maximum reaches this (HU) are metal: excluded and flagged (section 4.4).
    metal_margin_mm : float
        Candidates inside a metal object's box grown by this margin (mm) are streak halo.
    cortex_hu : float
        Component voxels below this (HU) lying deep inside a shell count as cancellous bone.
    bone_cancellous_mm3 : float
        A component with at least this much cancellous bone (mm^3) bears bone when its 99th
        percentile reaches ``bone_dense_hu`` (a cortex), its mean stays under
        ``bone_low_mean_hu`` (cancellous-dominated: ribs, costal cartilage, thick slices) or it
        is at least ``bone_long_mm`` long (a demineralised long bone).
    bone_dense_hu, bone_low_mean_hu, bone_long_mm : float
        See ``bone_cancellous_mm3`` (HU, HU, mm).
    bone_min_volume_mm3, bone_min_extent_mm : float
        A component at least this large (mm^3) and long (mm) bears bone even without cancellous
        bone (demineralised bone: a cortical shell around fatty marrow).
    bone_open_radius_mm : float
        Bone proper = the slice-filled bone-bearing component opened by a ball of this radius (mm);
        calcifications thinner than twice this that stick out of it are soft-tissue lesions
        (unless as dense as the cortex, see ``bone_fragment_ratio``).
    bone_margin_mm : float
        Voxels within this distance (mm) of the bone proper are cortex partial volume, not lesion.
    bone_split_max_slice_mm : float
        Calcification touching bone is split from it only when slices are at most this far apart
        (mm): on thicker slices a 3D opening cannot tell a deposit from a bone edge.
    cartilage_gap_mm, cartilage_min_mm3 : float
        Pieces of at least ``cartilage_min_mm3`` with a mean under ``bone_low_mean_hu`` within
        ``cartilage_gap_mm`` of bone (at least one slice spacing) are rib ends or costal
        cartilage and join the bone; smaller ones (phleboliths, parasites) stay lesions.
    bone_piece_min_mm3 : float
        Parts split off bone smaller than this (mm^3) are cortex slivers, not lesions.
    bone_fragment_ratio : float
        The cortex of a bone-bearing component is its voxels at or above this fraction of the
        component's 99th percentile; bone proper is what the cortex encloses slice by slice.
        Parts split off bone whose 90th percentile reaches this fraction
        of the component's 99th percentile (its cortex) are bone the opening cut off.
    bone_contact_ratio : float
        Parts split off bone with at least this fraction of their voxels next to bone lie along
        it (bone ends, rims) and stay bone; deposits on bone touch it on a small patch (measured
        on the phantoms: deposits 0.02-0.37, cut-off bone 0.53-0.75).
    faint_max_mm3, faint_margin_hu : float
        Components smaller than ``faint_max_mm3`` whose peak stays within ``faint_margin_hu`` of
        the threshold are noise (a contrast test in place of smoothing the whole volume).
    dx_background_scale_mm : float
        Radiographs: radius (mm) of the local-median background subtracted before thresholding;
        the largest calcification detected whole is about twice this.
    dx_smooth_mm : float
        Radiographs: Gaussian pre-smoothing sigma (mm) of the detection image.
    dx_contrast_sigma : float
        Radiographs: a candidate needs a seed pixel whose background-corrected contrast is at least
        this many noise sigmas (noise: robust MAD of a high-pass image).
    dx_grow_sigma : float
        Radiographs: candidates grow (hysteresis) over pixels of at least this many noise sigmas.
    dx_min_area_mm2 : float
        Radiographs: connected components smaller than this (mm^2) are noise and dropped.
    dx_group_gap_mm : float
        Radiographs: components closer than this gap (mm) are grouped into one lesion.
    dx_bone_min_area_mm2 : float
        Radiographs: a dense structure of at least this area (mm^2, holes filled) whose rim is
        brighter than its inside (cortical edges) is bone.
    dx_bone_open_mm : float
        Radiographs: opening radius (mm) that cuts thin calcifications off a bone before the bone
        mask is taken.
    dx_bone_margin_mm : float
        Radiographs: candidates within this distance (mm) of bone are bone (cortex blur and
        edge-enhancement halo).
    dx_skin_band_mm : float
        Radiographs: candidates lying mostly within this distance (mm) of the skin-air boundary
        are the edge-enhancement halo of the skin line, not calcification.
    dx_fallback_pixel_mm : float
        Radiographs with unknown spacing: the pixel size (mm) assumed for the scales above
        (a flag says so).
    dx_over_bone_inset_mm : float
        Radiographs: calcification projected over bone is sought this far (mm) inside the bone's
        outline (past the cortical edge's bright band).
    dx_over_bone_scale_mm : float
        Radiographs: radius (mm) of the local median of the bone itself that a calcification over
        bone is measured against (a bit larger than the largest deposit found whole over bone).
    dx_over_bone_sigma : float
        Radiographs: seed contrast over bone, in noise sigmas measured over bone (trabecular
        texture included) on the image smoothed by ``dx_over_bone_smooth_mm``; candidates grow
        over half of it.
    dx_over_bone_smooth_mm : float
        Radiographs: Gaussian sigma (mm) of the image searched over bone: a deposit's own scale,
        which averages out the finer trabecular texture (phantom deposits over bone: 8-9 sigma
        at 0.5 mm, 5-6 at 0.2 mm, where texture blobs reach the same).
    dx_over_bone_max_elongation : float
        Radiographs: a candidate over bone more elongated than this (square root of the ratio of
        its second moments) is a cortical edge or trabecular streak, not a deposit.
    dx_over_bone_line_sigma : float
        Radiographs: a candidate over bone with an internal cortical line at least this strong
        (ridge strength in noise sigmas) within 2 mm of it is that line's end or a crossing of
        lines, not a deposit (phantom: deposits 1.5-5.7, line ends and crossings 8-20).
    dx_blob_smooth_mm : float
        Radiographs: Gaussian sigma (mm) of a second soft-tissue search for faint compact deposits
        at their own scale (0 turns it off): a 2-5 mm deposit gains signal over pixel noise there,
        where at ``dx_smooth_mm`` it stays under the seed.
    dx_blob_sigma : float
        Radiographs: seed contrast of that search, in noise sigmas of the image smoothed by
        ``dx_blob_smooth_mm``; candidates grow over half of it and must be compact (elongation
        <= ``dx_over_bone_max_elongation``, filling their moment ellipse) and clear of bone and
        skin by ``dx_blob_clear_mm``. Higher than ``dx_contrast_sigma`` because the smoothed image
        holds more anatomical clutter per noise sigma (phantom DX views, seeds 0-2 demo and 0-1
        test: compact lesion-free blobs reach 14.0, missed deposits 14.4-17.9).
    dx_blob_clear_mm : float
        Radiographs: that search keeps only candidates at least this far (mm) from bone and from
        the skin line (the edge-enhancement halos and strips beside them are not deposits).
    dx_bone_rim_mm : float
        Radiographs: a thin elongated candidate lying for 90% within this distance (mm) of bone
        is cortex the bone opening cut off (a socket's rim seen tangentially) and joins the bone;
        applied twice, so a second rim along the first joins too.
    joint_gap_mm : float
        Two bones closer than this (mm) form a joint; its gap is the non-bone region within half
        of it of both (criteria-research 2.6 ``d_joint``: 10 mm, an estimate [est]).
    joint_min_bone_mm : float
        Bones smaller than a cube (CT) or square (radiographs) of this side (mm) take no part in
        joints: fragments and sesamoid-sized pieces (8 mm: 512 mm^3, 64 mm^2; an estimate [est]).
    periarticular_mm : float
        A deep lesion at most this far (mm) from a joint gap is periarticular (criteria-research
        2.6: 50 mm, an estimate [est]).
    intra_articular_fraction : float
        A lesion with at least this fraction of its voxels inside a joint gap is intra-articular
        (most of it: 0.5, a definition, not a measured cut-off [est]).
    """

    threshold_hu: float = 130.0
    min_volume_mm3: float = 1.0
    connectivity: int = 26
    nonuniform_slices: str = "resample"
    group_gap_mm: float = 3.0
    metal_hu: float = 3000.0
    metal_margin_mm: float = 10.0
    cortex_hu: float = 500.0
    bone_cancellous_mm3: float = 300.0
    bone_dense_hu: float = 1000.0
    bone_low_mean_hu: float = 300.0
    bone_long_mm: float = 50.0
    bone_min_volume_mm3: float = 20000.0
    bone_min_extent_mm: float = 80.0
    bone_open_radius_mm: float = 3.0
    bone_margin_mm: float = 1.0
    bone_split_max_slice_mm: float = 2.5
    cartilage_gap_mm: float = 5.0
    cartilage_min_mm3: float = 100.0
    bone_piece_min_mm3: float = 10.0
    bone_fragment_ratio: float = 0.7
    bone_contact_ratio: float = 0.45
    faint_max_mm3: float = 10.0
    faint_margin_hu: float = 40.0
    dx_background_scale_mm: float = 8.0
    dx_smooth_mm: float = 0.2
    dx_contrast_sigma: float = 8.0
    dx_grow_sigma: float = 4.0
    dx_min_area_mm2: float = 1.0
    dx_group_gap_mm: float = 2.0
    dx_bone_min_area_mm2: float = 400.0
    dx_bone_open_mm: float = 1.5
    dx_bone_margin_mm: float = 0.5
    dx_skin_band_mm: float = 3.0
    dx_fallback_pixel_mm: float = 0.2
    dx_over_bone_inset_mm: float = 1.5
    dx_over_bone_scale_mm: float = 5.0
    dx_over_bone_sigma: float = 8.0
    dx_over_bone_smooth_mm: float = 0.5
    dx_over_bone_max_elongation: float = 3.5
    dx_over_bone_line_sigma: float = 7.0
    dx_bone_rim_mm: float = 4.0
    dx_blob_smooth_mm: float = 0.5
    dx_blob_sigma: float = 16.0
    dx_blob_clear_mm: float = 3.0
    joint_gap_mm: float = 10.0
    joint_min_bone_mm: float = 8.0
    periarticular_mm: float = 50.0
    intra_articular_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.connectivity not in (6, 18, 26):
            raise ValueError(f"settings: connectivity must be 6, 18 or 26, not {self.connectivity!r}")
        if self.min_volume_mm3 < 0:
            raise ValueError(f"settings: min_volume_mm3 must be >= 0, not {self.min_volume_mm3!r}")
        for name in ("dx_background_scale_mm", "dx_smooth_mm", "dx_contrast_sigma", "dx_grow_sigma",
                     "dx_fallback_pixel_mm", "dx_over_bone_scale_mm", "dx_over_bone_sigma",
                     "dx_over_bone_smooth_mm", "dx_over_bone_max_elongation",
                     "dx_over_bone_line_sigma", "dx_blob_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"settings: {name} must be > 0, not {getattr(self, name)!r}")
        for name in ("dx_min_area_mm2", "dx_group_gap_mm", "dx_bone_min_area_mm2", "dx_bone_open_mm",
                     "dx_bone_margin_mm", "dx_skin_band_mm", "dx_over_bone_inset_mm",
                     "dx_bone_rim_mm", "dx_blob_smooth_mm", "dx_blob_clear_mm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"settings: {name} must be >= 0, not {getattr(self, name)!r}")
        for name in ("joint_gap_mm", "intra_articular_fraction"):
            if not getattr(self, name) > 0:
                raise ValueError(f"settings: {name} must be > 0, not {getattr(self, name)!r}")
        for name in ("joint_min_bone_mm", "periarticular_mm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"settings: {name} must be >= 0, not {getattr(self, name)!r}")
        if self.dx_grow_sigma > self.dx_contrast_sigma:
            raise ValueError(
                f"settings: dx_grow_sigma ({self.dx_grow_sigma!r}) must not exceed dx_contrast_sigma "
                f"({self.dx_contrast_sigma!r})"
            )
        if self.nonuniform_slices not in ("resample", "error"):
            raise ValueError(
                f"settings: nonuniform_slices must be 'resample' or 'error', not {self.nonuniform_slices!r}"
            )

    @classmethod
    def from_mapping(cls, values: dict, source: str = "settings") -> Settings:
        """Build settings from a mapping; an unknown key or a wrong type is an error naming it."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
            default = getattr(cls(), key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ValueError(
                    f"{source}: {key!r} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
                )
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> Settings:
        with open(path, "rb") as fp:
            return cls.from_mapping(tomllib.load(fp), source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_toml(self) -> str:
        lines = []
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"

    @property
    def hash(self) -> str:
        """A short hash of the settings: equal settings, equal hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
