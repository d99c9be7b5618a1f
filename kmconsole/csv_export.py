"""The one CSV writer of the product: every cell a spreadsheet could read as a formula is neutralised.

A cell that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR is prefixed with ``'`` so Excel,
LibreOffice and Numbers show it as text instead of evaluating it (OWASP, "CSV Injection":
https://owasp.org/www-community/attacks/CSV_Injection). This matters for text we do not write
ourselves: user names, and Apple's error messages. Numbers (int, float) are written as they are.

(Not defusedcsv: it leaves TAB and CR alone and rewrites every ``|`` inside a cell.)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> object:
    """``value`` safe for a spreadsheet: a str starting with one of FORMULA_STARTS gets a leading
    ``'``; None becomes ""; anything else that is not a number is written as its str()."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file that hands back what is written (for streaming responses)."""

    def write(self, value):
        return value


class SafeCsvWriter:
    """A ``csv.writer`` whose rows go through ``csv_cell``.

    ``SafeCsvWriter()`` returns each row as a str from ``writerow`` (for a
    StreamingHttpResponse); ``SafeCsvWriter(file)`` writes to ``file``.
    """

    def __init__(self, file=None):
        self._writer = csv.writer(file if file is not None else _Echo())

    def writerow(self, row: Iterable):
        return self._writer.writerow([csv_cell(value) for value in row])
