"""The one error type for bad user input: every CLI turns it into a single line and exit code 2."""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input given by the user (file, record, field, flag). The message is one line."""


def input_error(path: str | os.PathLike | None, message: str, record: object = None,
                field: str | None = None) -> InputError:
    """Build an InputError whose message names the file, the record id and the field."""
    parts = []
    if path is not None:
        parts.append(str(path))
    if record is not None:
        parts.append(f"record {record!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    parts.append(message)
    return InputError(": ".join(parts).replace("\n", " "))
