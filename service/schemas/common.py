"""What every request's input shares: ids bounded by their column type, and strings a database stores.

Ids, limits and offsets are 32-bit INTEGER columns (or compared with them) on PostgreSQL: a larger
number would reach the database and fail there, so it is refused at the edge (422). PostgreSQL cannot
store a NUL character in text, and no name, reason or path of ours has a use for control characters,
so every string of a request body is checked for them (422 on both databases). Floats must be finite:
JSON columns and responses cannot hold NaN or Infinity.
"""

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

INT32_MAX = 2**31 - 1
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, newline and carriage return are text


def control_character_error(value: str) -> str | None:
    """Why `value` cannot be stored (a control character or a lone surrogate), or None."""
    match = CONTROL.search(value)
    if match:
        return f"control character U+{ord(match.group()):04X} at position {match.start()} is not allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"invalid character (lone surrogate) at position {exc.start}"
    return None


def _check_strings(value: Any, where: str = "") -> None:
    if isinstance(value, str):
        problem = control_character_error(value)
        if problem:
            raise ValueError(f"{where or 'value'}: {problem}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, where)
            _check_strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_strings(v, f"{where}[{i}]")


class InputModel(BaseModel):
    """Base of every request body: unknown fields refused, floats finite, strings free of control
    characters (checked on the raw input, so keys and free-form dicts are covered too)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        _check_strings(data)
        return data


def _id_path(what: str) -> Any:
    return Path(ge=1, le=INT32_MAX, description=f"The {what}'s id.")


ProjectId = Annotated[int, _id_path("project")]
ImageId = Annotated[int, _id_path("image")]
RegionId = Annotated[int, _id_path("region")]
CycleId = Annotated[int, _id_path("cycle")]
TokenId = Annotated[int, _id_path("token")]
LEASE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
LeaseId = Annotated[str, Path(pattern=LEASE_ID_PATTERN, description="The lease's id.")]
LeaseIdItem = Annotated[str, Field(pattern=LEASE_ID_PATTERN)]
IdItem = Annotated[int, Field(ge=1, le=INT32_MAX)]
Offset = Annotated[int, Query(ge=0, le=INT32_MAX)]
