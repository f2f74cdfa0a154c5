"""Delimited text rows, read leniently: rows with another number of fields are counted and left out, cells that are
blank or not a number become NaN (the text readers' shared way with damaged files)."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextTable:
    """The rows of a delimited text file that have the expected number of fields.

    Attributes:
        values: float64 [n_rows, n_fields]; NaN where a cell is blank or not a number.
        cells: the same rows as text, [n_rows][n_fields] stripped strings; None when every cell was a number (read
            by numpy at once: :meth:`column` writes them out when asked).
        n_fields: fields per row.
        n_wrong_fields: rows left out because they had another number of fields (truncated or damaged lines).
    """

    values: np.ndarray
    cells: list[list[str]] | None
    n_fields: int
    n_wrong_fields: int

    def column(self, j: int) -> list[str]:
        """The cells of column ``j`` as text, one per row ("" for a NaN of an all-numeric table)."""
        if self.cells is not None:
            return [row[j] for row in self.cells]
        return [repr(float(v)) if np.isfinite(v) else "" for v in self.values[:, j]]


def _to_float(cells: Sequence[str]) -> np.ndarray:
    """``cells`` as float64 [n]; NaN for blank or non-numeric cells."""
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        pass
    out = np.full(len(cells), np.nan)
    for i, v in enumerate(cells):
        try:
            out[i] = float(v)
        except ValueError:
            pass
    return out


def column_separator(header: str) -> str:
    """The separator of a delimited text file whose first line is ``header``: ``;`` (a European spreadsheet's) or
    ``\\t`` when the line holds those and no comma, else ``,``."""
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def warn_dropped(path: Path, n: int, why: str, total: int) -> None:
    """Say that ``n`` of the ``total`` rows of ``path`` were dropped, and ``why`` (nothing when ``n`` is 0)."""
    if n:
        log.warning("%s: dropped %d row(s) %s; kept the other %d", path.name, n, why, total - n)


def warn_missing_values(path: Path, n_rows: int) -> None:
    """Say that ``n_rows`` rows of ``path`` have blank or non-numeric values, kept as missing samples (0: nothing)."""
    if n_rows:
        log.warning("%s: %d row(s) have blank or non-numeric EEG values; kept as missing samples (NaN)", path.name,
                    n_rows)


def read_text_table(lines: Sequence[str], sep: str, n_fields: int | None = None) -> TextTable:
    """Parse non-empty text ``lines`` split by ``sep``, keeping rows of ``n_fields`` fields (default: the most
    common count); see :class:`TextTable`. Never raises on content."""
    if lines:  # (an intact all-numeric file: numpy reads it at once)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = np.loadtxt(lines, delimiter=sep, ndmin=2, dtype=np.float64)
            if values.shape[0] == len(lines) and n_fields in (None, values.shape[1]):
                return TextTable(values, None, values.shape[1], 0)
        except ValueError:
            pass
    rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
    if n_fields is None:
        n_fields = Counter(len(r) for r in rows).most_common(1)[0][0] if rows else 0
    kept = [r for r in rows if len(r) == n_fields]
    if not kept:
        return TextTable(np.empty((0, n_fields)), [], n_fields, len(rows))
    try:
        values = np.asarray(kept, dtype=np.float64)
    except ValueError:
        values = np.stack([_to_float(col) for col in zip(*kept)], axis=1)
    return TextTable(values.reshape(len(kept), n_fields), kept, n_fields, len(rows) - len(kept))
