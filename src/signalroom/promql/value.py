"""Query results and errors of the PromQL engine."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import Labels


class PromQLError(Exception):
    """A query error carrying Prometheus's API error type."""

    error_type = "execution"


class BadDataError(PromQLError):
    error_type = "bad_data"


class ExecutionError(PromQLError):
    error_type = "execution"


class QueryTimeoutError(PromQLError):
    error_type = "timeout"


class Sample(NamedTuple):
    """One sample of an instant vector (a named tuple: queries build them by the thousand,
    and a tuple is built three times faster than a frozen dataclass)."""

    labels: Labels
    value: float
    timestamp_ms: int


@dataclass
class Series:
    labels: Labels
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass
class Scalar:
    value: float
    timestamp_ms: int
    type_name = "scalar"


@dataclass
class String:
    value: str
    timestamp_ms: int
    type_name = "string"


@dataclass
class Vector:
    samples: list[Sample]
    type_name = "vector"


@dataclass
class Matrix:
    series: list[Series]
    type_name = "matrix"


QueryValue = Scalar | String | Vector | Matrix


@dataclass
class Result:
    """A query's value plus the warning and info annotations it produced."""

    value: QueryValue
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


def format_float(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_go_g(value: float) -> str:
    """Go's %g / %v for a float64 (shortest digits, exponent when < 1e-4 or >= 1e21)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exp = _shortest_digits(value)
    sign = "-" if value < 0 else ""
    if exp < -4 or exp >= 21:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + format_float(abs(value))


def _shortest_digits(value: float) -> tuple[str, int]:
    mant, _, exp_text = f"{abs(value):e}".partition("e")
    del mant
    dec = Decimal(repr(abs(value))).normalize()
    sign, digit_tuple, exponent = dec.as_tuple()
    del sign
    digits = "".join(str(d) for d in digit_tuple)
    exp = len(digits) + int(exponent) - 1
    del exp_text
    return digits, exp
