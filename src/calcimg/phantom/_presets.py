"""The studies each preset writes. Lesions are placed in list order: anchored patterns first."""

from __future__ import annotations

from ._ct import CTSpec
from ._radiograph import DXSpec, DXView

AP = (0, 1, 0)  # beam anterior -> posterior


def _dx_views(bits_m1=16):
    return [
        DXView("erect_ap", "erect", AP, ("L", "F"), "AP", "MONOCHROME2", 12),
        DXView("supine_ap", "supine", AP, ("L", "F"), "AP", "MONOCHROME1", bits_m1),
        DXView("left_decubitus_ap", "left_decubitus", AP, ("L", "F"), "LLD", "MONOCHROME1", 14),
    ]


def _test() -> list:
    small = {"shape": (40, 96, 96), "spacing": (2.0, 1.0, 1.0), "scale": 0.38, "size": 0.65}
    return [
        CTSpec("ct_supine", "supine", storage="uint16", **small,
               lesions=[("calcific_tendinitis",), ("vascular",), ("tumoral_calcinosis",),
                        ("phlebolith", {}, 2)]),
        CTSpec("ct_prone", "prone", storage="int16", shape=(48, 96, 96), spacing=(1.5, 0.9, 0.9),
               scale=0.36, size=0.65, z_center=-30,
               lesions=[("myositis_ossificans",), ("tumoral_calcinosis",),
                        ("calcinosis_cutis", {"variant": "plaque"}),
                        ("calcinosis_cutis", {"variant": "sheet"})]),
        CTSpec("ct_left_decubitus", "left_decubitus", storage="uint16", shape=(36, 96, 96),
               spacing=(2.5, 1.0, 1.0), scale=0.38, size=0.65,
               lesions=[("tumoral_calcinosis",), ("hydatid_cyst",), ("parasitic", {"n": 6})]),
        CTSpec("ct_right_decubitus", "right_decubitus", storage="int16", demineralised=True,
               **small, lesions=[("vascular", {}, 2), ("tumoral_calcinosis",), ("tumor_matrix",),
                                 ("dystrophic",)],
               description="metabolic variant: demineralised bone and vascular calcification"),
        CTSpec("ct_oblique", "supine", oblique=(18.0, 14.0), storage="uint16", shape=(48, 96, 96),
               spacing=(1.25, 1.0, 1.0), scale=0.38, size=0.65,
               lesions=[("tumoral_calcinosis",), ("tumoral_calcinosis", {"variant": "solid"}),
                        ("lymph_node", {}, 2)]),
        DXSpec("dx_hip", _dx_views(), shape=(384, 384), scale=0.3, size=0.7,
               lesions=[("calcific_tendinitis",), ("vascular",), ("tumoral_calcinosis",),
                        ("phlebolith",)]),
    ]


def _demo() -> list:
    base = {"shape": (64, 256, 256), "spacing": (2.0, 0.75, 0.75), "scale": 0.6, "size": 1.0,
            "table": True, "noise_sd": 15.0}
    views = [*_dx_views(), DXView("erect_lateral", "erect", (1, 0, 0), ("P", "F"), "LL",
                                  "MONOCHROME2", 16)]
    return [
        CTSpec("demo_supine", "supine", storage="uint16", **base,
               lesions=[("calcific_tendinitis",), ("vascular",), ("myositis_ossificans",),
                        ("tumoral_calcinosis",), ("lymph_node", {}, 2), ("phlebolith", {}, 3),
                        ("calcinosis_cutis", {}, 2)]),
        CTSpec("demo_left_decubitus", "left_decubitus", storage="int16",
               **{**base, "spacing": (1.5, 0.75, 0.75)}, z_center=-8,
               lesions=[("tumoral_calcinosis",), ("hydatid_cyst",), ("parasitic", {"n": 15})]),
        CTSpec("demo_oblique", "supine", oblique=(20.0, 12.0), storage="uint16",
               **{**base, "spacing": (1.25, 0.75, 0.75)}, z_center=-4,
               lesions=[("tumoral_calcinosis",), ("tumoral_calcinosis", {"variant": "solid"}),
                        ("tumor_matrix",), ("dystrophic",), ("lymph_node",)]),
        CTSpec("demo_metabolic_prone", "prone", storage="int16", demineralised=True, **base,
               lesions=[("vascular", {}, 3), ("tumoral_calcinosis",),
                        ("calcinosis_cutis", {"variant": "sheet"}), ("phlebolith", {}, 2),
                        ("dystrophic",)],
               description="metabolic variant: demineralised bone and vascular calcification"),
        DXSpec("demo_dx", views, shape=(768, 768), scale=0.55, size=1.0,
               lesions=[("calcific_tendinitis",), ("vascular",), ("myositis_ossificans",),
                        ("tumoral_calcinosis",), ("phlebolith", {}, 2), ("parasitic", {"n": 6})]),
    ]


def _bench() -> list:
    return [
        CTSpec("bench_pelvis", "supine", storage="int16", shape=(400, 512, 512),
               spacing=(1.0, 0.8, 0.8), anatomy="pelvis", scale=1.0, size=1.0, table=True,
               z_center=-50.0, noise_sd=15.0,
               # 20 bone-contiguous: tendinitis at the 8 insertions, 12 deposits on the cortex
               lesions=[("calcific_tendinitis", {}, 8), ("vascular", {}, 8),
                        ("myositis_ossificans", {}, 2), ("tumoral_calcinosis", {}, 3),
                        ("tumoral_calcinosis", {"variant": "solid"}), ("lymph_node", {}, 10),
                        ("phlebolith", {}, 16), ("dystrophic", {"at_bone": True}, 12),
                        ("hydatid_cyst", {}, 2), ("tumor_matrix", {}, 2),
                        ("dystrophic", {}, 6), ("calcinosis_cutis", {}, 12),
                        ("parasitic", {"n": 118})]),
    ]


PRESETS = {"test": _test, "demo": _demo, "bench": _bench}
