"""How to read a recording whose format does not describe itself fully: the CSV columns
to read and the ``ReadOptions`` (rate, start, units, time zone) every reader takes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

UNITS = ("g", "m/s2")

Column = str | int
"""A CSV column: its name in the header row, or its 0-based position in a file without one."""

POSITION_ROLES = ("time", "x", "y", "z")


CSV_COLUMNS_HELP = (
    "CSV columns by name (time=ts) or, for a file without a header row, by 0-based "
    "position (time=0,x=1,y=2,z=3)"
)
"""Command-line help of the ``--columns`` option that ``CsvColumns.parse`` reads."""


@dataclass(frozen=True)
class CsvColumns:
    """The columns to read from a CSV file (``label`` only for labelled data): each a
    name from the header row, or each a 0-based position, meaning the file has no header
    row. Names and positions do not mix."""

    time: Column = "time"
    x: Column = "x"
    y: Column = "y"
    z: Column = "z"
    label: Column = "label"

    def __post_init__(self) -> None:
        for role in self.__dataclass_fields__:
            value = getattr(self, role)
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ValueError(f"column {role}={value!r} must be a name or a position")
            if isinstance(value, int) and value < 0:
                raise ValueError(f"column position {role}={value} must be 0 or more")
        given = {role: getattr(self, role) for role in POSITION_ROLES}
        positions = {role: v for role, v in given.items() if isinstance(v, int)}
        if isinstance(self.label, int) and not positions:
            raise ValueError(
                f"column label={self.label} is a position but the other columns are names "
                f"{given}; give every column as a name or every one as a 0-based position"
            )
        if positions and len(positions) < len(given):
            names = {role: v for role, v in given.items() if isinstance(v, str)}
            raise ValueError(
                f"columns {names} are names but {positions} are positions; give every "
                f"column as a name or every one as a 0-based position (no header row)"
            )
        if positions:
            seen: dict[int, str] = {}
            for role, position in {**positions, **self._label_position()}.items():
                if position in seen:
                    raise ValueError(
                        f"column position {position} is given for both {seen[position]} and {role}"
                    )
                seen[position] = role

    def _label_position(self) -> dict[str, int]:
        return {"label": self.label} if isinstance(self.label, int) else {}

    @property
    def positional(self) -> bool:
        """Whether columns are given by position (the file has no header row)."""
        return isinstance(self.time, int)

    @classmethod
    def parse(cls, pairs: list[str] | None) -> CsvColumns:
        """``["time=timestamp", "x=x_acc", ...]`` -> columns; names not given keep defaults.

        A value of digits is a 0-based position (``time=0,x=1,y=2,z=3``: a file without a
        header row); then time, x, y and z must all be positions.
        """
        if not pairs:
            return cls()
        values: dict[str, Column] = {}
        for pair in pairs:
            for item in pair.split(","):
                key, sep, value = item.partition("=")
                key, value = key.strip(), value.strip()
                if not sep or key not in cls.__dataclass_fields__ or not value:
                    raise ValueError(
                        f"column mapping {item!r} must be ROLE=NAME or ROLE=POSITION with "
                        f"ROLE one of {list(cls.__dataclass_fields__)}"
                    )
                if value.startswith("-") and value[1:].isdigit():
                    raise ValueError(f"column mapping {item!r}: a position must be 0 or more")
                values[key] = int(value) if value.isdigit() else value
        positions = {k: v for k, v in values.items() if isinstance(v, int)}
        if positions:
            names = {k: v for k, v in values.items() if isinstance(v, str)}
            if names:
                role, name = next(iter(names.items()))
                raise ValueError(
                    f"column mapping {role}={name!r} is a name but "
                    f"{', '.join(f'{k}={v}' for k, v in positions.items())} "
                    f"{'is a position' if len(positions) == 1 else 'are positions'}; give "
                    f"every column as a name or every one as a 0-based position (no header row)"
                )
            missing = [role for role in POSITION_ROLES if role not in positions]
            if missing:
                raise ValueError(
                    f"column positions {positions} leave {missing} unset; a file without a "
                    f"header row needs a position for each of {list(POSITION_ROLES)}"
                )
        return cls(**values)


@dataclass(frozen=True)
class ReadOptions:
    """How to read formats that do not describe themselves fully.

    ``sample_rate_hz`` is required for ``.npy`` (and for ``.npz`` without times or rate);
    for other formats it overrides the rate inferred from the times. ``start`` (ISO time)
    is the first sample's time of arrays without times. ``units`` applies to CSV and
    arrays; device files are always in g.
    """

    sample_rate_hz: float | None = None
    start: str | None = None
    units: str = "g"
    columns: CsvColumns = field(default_factory=CsvColumns)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {self.units!r}")
        if self.sample_rate_hz is not None and not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        try:
            ZoneInfo(self.timezone)
        except Exception as error:
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from error

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ReadOptions:
        """The options that ``--rate``, ``--start``, ``--units``, ``--columns`` and
        ``--timezone`` give, as ``wearssl ingest`` and ``wearssl predict`` take them."""
        return cls(
            sample_rate_hz=args.rate,
            start=args.start,
            units=args.units,
            columns=CsvColumns.parse(args.columns),
            timezone=args.timezone,
        )
