"""Turning results into files: lesions.csv, series.csv, the data dictionary, settings.toml."""

from calcimg.report._columns import LESION_COLUMNS, SERIES_COLUMNS, Column, data_dictionary_rows
from calcimg.report._write import atomic_write_text, write_csv, write_outputs

__all__ = [
    "LESION_COLUMNS",
    "SERIES_COLUMNS",
    "Column",
    "atomic_write_text",
    "data_dictionary_rows",
    "write_csv",
    "write_outputs",
]
