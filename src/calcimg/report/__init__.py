"""Turning results into files: lesions.csv, series.csv, the data dictionary, settings.toml; and
reading them back for people (`load_results`, `measure_study`; figures in `calcimg.report.figures`,
which imports matplotlib)."""

from calcimg.report._columns import LESION_COLUMNS, SERIES_COLUMNS, Column, data_dictionary_rows
from calcimg.report._results import (
    Results,
    SeriesView,
    describe_lesion,
    lesion_table,
    load_results,
    measure_study,
    series_status,
    series_summary,
)
from calcimg.report._write import atomic_write_text, write_csv, write_outputs

__all__ = [
    "LESION_COLUMNS",
    "SERIES_COLUMNS",
    "Column",
    "Results",
    "SeriesView",
    "atomic_write_text",
    "data_dictionary_rows",
    "describe_lesion",
    "lesion_table",
    "load_results",
    "measure_study",
    "series_status",
    "series_summary",
    "write_csv",
    "write_outputs",
]
