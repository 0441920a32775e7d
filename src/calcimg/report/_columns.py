"""The output schema: every column with its unit and meaning (CONTRACT.md).

This list is the single source of `data_dictionary.csv` and the column order of the CSVs. A column,
once shipped, keeps its name, unit and meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from calcimg.criteria._table import PATTERNS
from calcimg.features.fluid_level import FLUID_LEVEL_COLUMNS
from calcimg.features.linearity import LINEARITY_COLUMNS
from calcimg.features.lobulation import LOBULATION_COLUMNS
from calcimg.features.mass import MASS_COLUMNS
from calcimg.features.morphology import MORPHOLOGY_COLUMNS
from calcimg.features.multiplicity import MULTIPLICITY_COLUMNS
from calcimg.features.rim import RIM_COLUMNS
from calcimg.features.septation import SEPTATION_COLUMNS


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    description: str
    ibsi_code: str = ""


LESION_COLUMNS: tuple[Column, ...] = (
    Column("study_uid", "", "StudyInstanceUID (NIfTI/NRRD: a stable hash of the path, 2.25.<int>)"),
    Column("series_uid", "", "SeriesInstanceUID (NIfTI/NRRD: a stable hash of the path, 2.25.<int>)"),
    Column("series_key", "", "series_uid, plus .pN when one DICOM series held several images or geometries"),
    Column("lesion_id", "", "1..n within the series, ordered by decreasing size (with a user's mask: by increasing label value)"),
    Column("label", "", "With a user's mask (extract --mask): the lesion's label value in that mask; empty otherwise"),
    Column("kind", "", "ct or radiograph"),
    Column("centroid_x_mm", "mm", "CT: patient x (LPS, + = patient left). Radiograph: image-plane mm along columns from the centre of the first pixel"),
    Column("centroid_y_mm", "mm", "CT: patient y (LPS, + = posterior). Radiograph: image-plane mm along rows from the centre of the first pixel"),
    Column("centroid_z_mm", "mm", "CT: patient z (LPS, + = head). Radiograph: empty"),
    Column("volume_mm3", "mm^3", "CT: voxel count x voxel volume of the calcified lesion"),
    Column("area_mm2", "mm^2", "Radiograph: pixel count x pixel area of the calcified lesion"),
    Column("max_diameter_mm", "mm", "Largest distance between two boundary-voxel centres of the lesion"),
    Column("component_count", "", "Connected calcified components grouped into this lesion"),
    Column("mean_hu", "HU", "CT: mean attenuation of the lesion's voxels"),
    Column("max_hu", "HU", "CT: maximum attenuation of the lesion's voxels"),
    Column("median_hu", "HU", "CT: median attenuation of the lesion's voxels"),
    Column("p10_hu", "HU", "CT: 10th percentile of the lesion's voxel HU"),
    Column("p90_hu", "HU", "CT: 90th percentile of the lesion's voxel HU"),
    Column("hu_weighted_volume_hu_mm3", "HU mm^3", "CT: sum of HU x voxel volume over the lesion (mean_hu x volume_mm3); x a scanner calibration factor c_HA (mg/cm^3/HU) / 1000 = calcium mass score in mg"),
    Column("rim_mean_hu", "HU", "CT: mean HU of the envelope (mask, holes filled) less than 1 mm below its surface"),
    Column("mid_mean_hu", "HU", "CT: mean HU of the envelope 1-2 mm below its surface"),
    Column("core_mean_hu", "HU", "CT: mean HU of the envelope at least 2 mm below its surface; empty for lesions too thin to have a core"),
    Column("rim_core_contrast", "", "CT: (rim - core) / (|rim| + |core|) mean HU, -1..1: +1 dense shell with a lucent centre, 0 homogeneous, < 0 densest centrally"),
    Column("bone_distance_mm", "mm", "Gap between the lesion surface and the nearest bone surface (CT: half-maximum boundaries); 0 when touching; empty when no bone within 30 mm"),
    Column("skin_depth_mm", "mm", "In-plane depth of the lesion centroid below the skin surface"),
    Column("shell_fat_fraction", "", "CT: fraction (0..1) of the tissue within 2 mm around the lesion that is fat (-190..-30 HU)"),
    Column("shell_muscle_fraction", "", "CT: fraction (0..1) of the tissue within 2 mm around the lesion that is muscle (30..80 HU)"),
    Column("joint_distance_mm", "mm", "Distance from the lesion surface to the nearest joint gap (non-bone region within 5 mm of two bones); 0 when the lesion reaches into one; empty when the scan shows no joint (radiographs: in the image plane)"),
    Column("compartment", "", "CT: intra_articular (most of the lesion inside a joint gap), cutaneous (centroid <= 3 mm below the skin), subcutaneous (surrounded by >= 50 % fat) or deep"),
    Column("periarticular", "", "1 when a deep lesion (radiographs: any lesion) lies within 50 mm of a joint gap, 0 when farther or not deep (cutaneous, subcutaneous, intra-articular); empty when not assessable"),
    Column("ossification_score", "", "CT, 0..1: cortical-shell completeness x marrow-like (100-400 HU or fat) fraction of the core"),
    Column("ossified", "", "CT: 1 when a cortical shell (>= 70 % of the rim) encloses a marrow-like core (>= 50 %), 0 otherwise: heterotopic bone / mature myositis ossificans vs calcification"),
    *(Column(*c) for c in MASS_COLUMNS),
    *(Column(*c) for c in MORPHOLOGY_COLUMNS),
    *(Column(*c) for c in (*LOBULATION_COLUMNS, *SEPTATION_COLUMNS, *LINEARITY_COLUMNS, *RIM_COLUMNS)),
    *(Column(*c) for c in FLUID_LEVEL_COLUMNS),
    *(Column(*c) for c in MULTIPLICITY_COLUMNS),
    Column("pattern", "", "Criteria stage: the pattern whose criteria score best (CONTRACT.md vocabulary), or indeterminate when none leads by the table's margin or key features were not assessable (docs/criteria.md)"),
    *(Column(f"score_{p}", "", f"Criteria stage, 0..1: support for the {p} pattern from the criteria table, lowered by not-assessed criteria (docs/criteria.md)") for p in PATTERNS),
    Column("evidence", "", "Criteria stage: the criteria of the chosen (or leading) pattern that fired, in words with their values; 'against:' marks criteria arguing against it"),
    Column("not_assessed", "", "Features that could not be measured, and why"),
)

SERIES_COLUMNS: tuple[Column, ...] = (
    Column("study_uid", "", "StudyInstanceUID, empty when the file could not be read"),
    Column("series_uid", "", "SeriesInstanceUID, empty when the file could not be read"),
    Column("series_key", "", "series_uid, plus .pN for the parts of a split series"),
    Column("source", "", "Input path the series (or the failing file) came from"),
    Column("kind", "", "ct, radiograph, localizer, volume, other, or empty for unreadable files"),
    Column("modality", "", "DICOM Modality"),
    Column("status", "", "ok, error or skipped"),
    Column("reason", "", "The error, or why the series was skipped, in words"),
    Column("n_files", "", "Files in the series"),
    Column("n_lesions", "", "Lesions found"),
    Column("shape", "voxels", "Array shape, space-separated (slices rows columns, or rows columns)"),
    Column("spacing_mm", "mm", "Voxel size per array axis, space-separated"),
    Column("spacing_source", "", "Which header fields gave the spacing"),
    Column("patient_position", "", "DICOM PatientPosition"),
    Column("gravity", "", "Gravity as 'x y z' in LPS, or unknown"),
    Column("gravity_source", "", "Where gravity came from, or why it is unknown"),
    Column("notes", "", "What loading did or noticed (resampling, quirks handled)"),
    Column("segmentation_flags", "", "What segmentation found that a user should know (metal, table removed, thick slices)"),
    Column("seconds", "s", "Wall time spent on the series"),
    Column("calcimg_version", "", "calcimg version that produced the row"),
    Column("settings_hash", "", "Hash of the settings used (settings.toml)"),
    Column("overlay", "", "overlays/<series_key>.png: the image with the lesion outlines, empty when none was drawn"),
    Column("seg_file", "", "seg/<series_key>.dcm: the lesions as a DICOM SEG (extract --seg, CT), empty otherwise"),
    Column("trabecular_bone_hu", "HU", "CT: typical (modal) HU of the cancellous bone of the scanned bones, >= 3 mm below the bone surface"),
    Column("demineralised", "", "CT: 1 when trabecular_bone_hu < demineralised_threshold_hu, else 0; empty when not measured (soft indicator of metabolic calcification)"),
    Column("demineralised_threshold_hu", "HU", "Threshold used for demineralised (120 HU, from L1 age norms [PICK19])"),
    Column("demineralised_source", "", "Where the demineralisation threshold comes from"),
    Column("n_vascular_calcifications", "", "Lesions whose pattern is vascular (criteria stage)"),
    Column("study_not_assessed", "", "Study-level columns that could not be measured, and why"),
    Column("metabolic_calcinosis_consistent", "", "1 when a tumoral-calcinosis pattern comes with demineralised bone or vascular calcification in the series: consistent with metabolic (e.g. renal-failure) calcinosis, which imaging cannot tell from hereditary tumoral calcinosis; 0 when neither; empty without a TC pattern or when bone density is unknown and no vascular calcification was seen"),
    Column("metabolic_calcinosis_evidence", "", "Why metabolic_calcinosis_consistent has its value, in words"),
    Column("criteria_table", "", "Version and content digest of the criteria table that assigned the patterns"),
)


def data_dictionary_rows() -> list[dict]:
    rows = []
    for table, cols in (("lesions.csv", LESION_COLUMNS), ("series.csv", SERIES_COLUMNS)):
        for c in cols:
            rows.append({"file": table, "column": c.name, "unit": c.unit, "description": c.description,
                         "ibsi_code": c.ibsi_code})
    return rows
