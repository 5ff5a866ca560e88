"""Reading the cost model's TOML data files with errors that name the file and the key."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from stolentee.costs.errors import CostDataError


def read_toml(path: Path, *, error: type[CostDataError], label: str) -> dict[str, Any]:
    """A TOML file with decimals read exactly; unreadable or malformed is ``error``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}: cannot read: {exc}") from None
    return parse_toml(text, error=error, label=label)


def parse_toml(text: str, *, error: type[CostDataError], label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{label}: not valid TOML: {exc}") from None


def shipped_text(*parts: str) -> str:
    """A data file shipped in ``stolentee/costs/data``."""
    node = resources.files("stolentee.costs").joinpath("data")
    for part in parts:
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def shipped_names(folder: str) -> tuple[str, ...]:
    """Names (without ``.toml``) of the data files shipped in ``data/<folder>``."""
    node = resources.files("stolentee.costs").joinpath("data", folder)
    return tuple(
        sorted(
            item.name.removesuffix(".toml")
            for item in node.iterdir()
            if item.name.endswith(".toml")
        )
    )


class Where:
    """A file and a dotted key inside it, for error messages."""

    def __init__(self, file: str, key: str = "", *, error: type[CostDataError]) -> None:
        self.file = file
        self.key = key
        self.error = error

    def __truediv__(self, part: str) -> Where:
        return Where(self.file, f"{self.key}.{part}" if self.key else part, error=self.error)

    def fail(self, problem: str) -> CostDataError:
        if self.key:
            return self.error(f"{self.file}: {self.key}: {problem}")
        return self.error(f"{self.file}: {problem}")


def shown(value: object) -> str:
    text = repr(str(value)) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def table(value: object, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.fail(f"must be a table; got {shown(value)}")
    return value


def text(value: object, where: Where) -> str:
    if not isinstance(value, str):
        raise where.fail(f"must be a string; got {shown(value)}")
    return value


def boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.fail(f"must be true or false; got {shown(value)}")
    return value


def number(value: object, where: Where, *, maximum: Decimal | None = None) -> Decimal:
    """A finite number >= 0 (and <= ``maximum``), exactly as written."""
    expected = "a number >= 0" if maximum is None else f"a number from 0 to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise where.fail(f"must be {expected}; got {shown(value)}")
    result = Decimal(value)
    if not result.is_finite() or result < 0 or (maximum is not None and result > maximum):
        raise where.fail(f"must be {expected}; got {shown(value)}")
    return result


def integer(value: object, where: Where, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.fail(f"must be a whole number >= {minimum}; got {shown(value)}")
    return value


def day(value: object, where: Where) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise where.fail(f"must be a date (YYYY-MM-DD); got {shown(value)}")


def strings(value: object, where: Where) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise where.fail(f"must be a list of strings; got {shown(value)}")
    return tuple(text(item, where / str(index)) for index, item in enumerate(value))


def no_unknown(entry: Mapping[str, Any], allowed: tuple[str, ...], where: Where) -> None:
    for key in entry:
        if key not in allowed:
            raise (where / key).fail(f"unknown key (expected one of {', '.join(allowed)})")


def required(entry: Mapping[str, Any], names: tuple[str, ...], where: Where) -> None:
    for name in names:
        if name not in entry:
            raise (where / name).fail("is missing")
