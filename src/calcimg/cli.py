"""The `calcimg` command: a thin shell over `calcimg.batch` and `calcimg.io`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from calcimg import __version__
from calcimg.errors import CalcimgError


def _fmt(values, digits=4) -> str:
    return " ".join(f"{v:.{digits}g}" for v in values)


def _info_rows(paths: list[str]) -> tuple[list[list[str]], list]:
    from calcimg.io import discover, load

    found = discover(paths)
    rows = []
    for s in found.series:
        row = [s.study_uid, s.key, s.modality or "-", s.kind, str(s.n_files)]
        if s.kind in ("ct", "radiograph", "volume"):
            try:
                scan = load(s)
                g = "unknown" if scan.gravity_lps is None else _fmt(scan.gravity_lps, 3)
                if scan.kind == "ct":
                    orient = _fmt(scan.direction[:, 2].tolist() + scan.direction[:, 1].tolist(), 3)
                else:
                    orient = "" if scan.axes_lps is None else _fmt(scan.axes_lps.ravel(), 3)
                row += ["x".join(map(str, scan.shape)), _fmt(scan.spacing), orient,
                        scan.header.get("patient_position", "") or scan.header.get("view_position", ""),
                        g, scan.gravity_source]
            except CalcimgError as exc:
                row += ["", "", "", "", "", f"ERROR {exc}"]
        else:
            row += ["", "", "", "", "", "not measured"]
        rows.append(row)
    return rows, found.skipped


def cmd_info(args) -> int:
    rows, skipped = _info_rows(args.paths)
    header = ["study_uid", "series", "modality", "kind", "files", "shape", "spacing_mm",
              "orientation (row, col cosines)", "position", "gravity_lps", "gravity_source"]
    if args.tsv:
        print("\t".join(header))
        for r in rows:
            print("\t".join(r))
    else:
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
        # UIDs are long: show their tails in the table, the full value with --tsv
        def cut(text, i):
            lim = 28 if i in (0, 1) else 60
            return text if len(text) <= lim else "..." + text[-(lim - 3):]
        widths = [min(w, 28 if i in (0, 1) else 60) for i, w in enumerate(widths)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(cut(v, i).ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))))
    print(f"\n{len(rows)} series; {len(skipped)} file(s) skipped")
    for s in skipped:
        print(f"  {s.status:7s} {s.path}: {s.reason}")
    return 0


def _pipelines_dirs() -> list[Path]:
    """Where `--pipeline NAME` looks: $CALCIMG_PIPELINES, then the project's pipelines/ folder."""
    dirs = [Path(p) for p in os.environ.get("CALCIMG_PIPELINES", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "pipelines")
    return dirs


def resolve_pipeline(name_or_path: str) -> Path:
    """A settings file from a path, or from a name in the pipelines folder (``ct`` -> ct.toml)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or os.sep in name_or_path:
        if not p.is_file():
            raise ValueError(f"--pipeline {name_or_path}: no such settings file")
        return p
    known: set[str] = set()
    for d in _pipelines_dirs():
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
        known.update(f.stem for f in d.glob("*.toml"))
    raise ValueError(f"--pipeline {name_or_path}: unknown pipeline (known: {', '.join(sorted(known)) or 'none'}; "
                     "or give a path to a .toml file)")


def cmd_extract(args) -> int:
    from calcimg.batch import OutputError, run_batch
    from calcimg.settings import Settings

    try:
        settings = Settings.from_toml(resolve_pipeline(args.pipeline)) if args.pipeline else Settings()
    except (OSError, ValueError) as exc:
        print(f"calcimg extract: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 0:
        print("calcimg extract: --workers must be >= 0", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.timeout > 0:
        print("calcimg extract: --timeout must be > 0 seconds", file=sys.stderr)
        return 2
    if args.scheduler and args.dask_local:
        print("calcimg extract: give --scheduler or --dask-local, not both", file=sys.stderr)
        return 2
    try:
        summary = run_batch(
            args.inputs, args.out, settings,
            workers=args.workers, scheduler=args.scheduler, dask_local=args.dask_local,
            resume=args.resume, retry_errors=args.retry_errors, timeout=args.timeout,
            overlays=not args.no_overlays, seg=args.seg, mask=args.mask,
            progress="quiet" if args.quiet else "auto",
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"calcimg extract: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"calcimg extract: {exc}", file=sys.stderr)
        return 1
    resumed = f" ({summary.n_resumed} from an earlier run)" if summary.n_resumed else ""
    print(f"{summary.n_ok} series ok, {summary.n_error} failed, {summary.n_skipped} skipped{resumed}; "
          f"{summary.n_lesions} lesions. Results in {summary.out_dir}/ (lesions.csv, series.csv)")
    return summary.exit_code


def cmd_phantom(args) -> int:
    from calcimg.phantom import generate

    written = generate(Path(args.outdir), preset=args.preset, seed=args.seed)
    print(f"wrote {len(written)} studies under {args.outdir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calcimg", description="Soft-tissue calcification features from CT and radiographs.")
    p.add_argument("--version", action="version", version=f"calcimg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    pi = sub.add_parser("info", help="list the series found under files and folders")
    pi.add_argument("paths", nargs="+")
    pi.add_argument("--tsv", action="store_true", help="tab-separated, full UIDs")
    pi.set_defaults(func=cmd_info)

    pe = sub.add_parser("extract", help="segment and measure every series; write lesions.csv and series.csv")
    pe.add_argument("inputs", nargs="+", help="DICOM files or folders, NIfTI/NRRD files")
    pe.add_argument("--out", required=True, help="output folder (not inside an input folder)")
    pe.add_argument("--pipeline", metavar="NAME_OR_PATH",
                    help="settings: a name from pipelines/ (ct, radiograph, high_sensitivity) or a TOML file")
    run = pe.add_argument_group("execution")
    run.add_argument("--workers", type=int, metavar="N",
                     help="local worker processes (default: CPU count; 0 = in this process)")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this dask.distributed scheduler")
    run.add_argument("--dask-local", type=int, metavar="N", help="start a local dask cluster of N workers")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="stop a series that takes longer; it becomes an error row")
    run.add_argument("--resume", action="store_true",
                     help="keep series already done with the same settings in --out, redo the others")
    run.add_argument("--retry-errors", action="store_true", help="with --resume, redo series that failed")
    outp = pe.add_argument_group("outputs")
    outp.add_argument("--seg", action="store_true", help="also write seg/<series>.dcm (DICOM SEG, CT; needs highdicom)")
    outp.add_argument("--no-overlays", action="store_true", help="do not draw overlays/<series>.png")
    pe.add_argument("--quiet", action="store_true", help="no progress bar or per-series lines; failures only")
    pe.add_argument("--mask", metavar="MASK",
                    help="NIfTI/NRRD label image on the input's grid: measure each label instead of segmenting")
    pe.set_defaults(func=cmd_extract)

    pp = sub.add_parser("phantom", help="write synthetic CT and radiograph studies with ground truth")
    pp.add_argument("outdir")
    pp.add_argument("--preset", default="demo", choices=["demo", "test", "bench"])
    pp.add_argument("--seed", type=int, default=0)
    pp.set_defaults(func=cmd_phantom)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FileNotFoundError as exc:
        print(f"calcimg {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
