"""Go's time.Time and time.Duration as template values (String and Format methods)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_LAYOUT = re.compile(
    r"January|Jan|Monday|Mon|MST|2006|Z07:00:00|Z07:00|Z0700|Z07|-07:00:00|-07:00|-0700|-07"
    r"|[.,](?:0+|9+)|__2|002|01|02|03|04|05|06|_2|15|1|2|3|4|5|PM|pm"
)


class GoTime:
    """A time.Time: prints like Go's Time.String and formats with Go layouts."""

    go_type = "*time.Time"

    def __init__(self, when: dt.datetime, nanos: int | None = None) -> None:
        self.when = when
        # Sub-microsecond digits are kept separately (datetime stops at microseconds).
        self.nanos = nanos if nanos is not None else when.microsecond * 1000

    def go_string(self) -> str:
        text = self.format("2006-01-02 15:04:05.999999999 -0700 MST")
        return text

    def go_methods(self) -> dict[str, Any]:
        return {
            "Format": self.format,
            "Unix": lambda: (
                int(self.when.timestamp())
                if self.when.timestamp() >= 0
                else int(self.when.timestamp() // 1)
            ),
            "UnixMilli": lambda: int(self.when.timestamp() * 1000),
            "UTC": lambda: GoTime(self.when.astimezone(dt.UTC), self.nanos),
            "Local": lambda: self,
            "String": self.go_string,
            "Year": lambda: self.when.year,
            "Day": lambda: self.when.day,
            "Hour": lambda: self.when.hour,
            "Minute": lambda: self.when.minute,
            "Second": lambda: self.when.second,
            "Weekday": lambda: self.when.strftime("%A"),
            "Month": lambda: self.when.strftime("%B"),
            "In": lambda loc: self.in_zone(loc),
        }

    def in_zone(self, loc: Any) -> GoTime:
        if isinstance(loc, dt.tzinfo):
            return GoTime(self.when.astimezone(loc), self.nanos)
        return self

    def _zone_name(self) -> str:
        name = self.when.tzname() or "UTC"
        if name == "UTC" or (self.when.utcoffset() == dt.timedelta(0) and name in ("UTC", "GMT")):
            return name
        return name

    def format(self, layout: str) -> str:
        w = self.when
        offset = w.utcoffset() or dt.timedelta(0)
        off_min = int(offset.total_seconds() // 60)
        sign = "-" if off_min < 0 else "+"
        oh, om = divmod(abs(off_min), 60)

        def repl(m: re.Match[str]) -> str:
            tok = m.group(0)
            if tok == "2006":
                return f"{w.year:04d}"
            if tok == "06":
                return f"{w.year % 100:02d}"
            if tok == "January":
                return w.strftime("%B")
            if tok == "Jan":
                return w.strftime("%b")
            if tok == "01":
                return f"{w.month:02d}"
            if tok == "1":
                return str(w.month)
            if tok == "Monday":
                return w.strftime("%A")
            if tok == "Mon":
                return w.strftime("%a")
            if tok == "02":
                return f"{w.day:02d}"
            if tok == "_2":
                return f"{w.day:2d}"
            if tok == "2":
                return str(w.day)
            if tok == "002":
                return f"{w.timetuple().tm_yday:03d}"
            if tok == "__2":
                return f"{w.timetuple().tm_yday:3d}"
            if tok == "15":
                return f"{w.hour:02d}"
            if tok in ("03", "3"):
                h = w.hour % 12 or 12
                return f"{h:02d}" if tok == "03" else str(h)
            if tok == "04":
                return f"{w.minute:02d}"
            if tok == "4":
                return str(w.minute)
            if tok == "05":
                return f"{w.second:02d}"
            if tok == "5":
                return str(w.second)
            if tok in ("PM", "pm"):
                ampm = "PM" if w.hour >= 12 else "AM"
                return ampm if tok == "PM" else ampm.lower()
            if tok == "MST":
                return self._zone_name()
            if tok.startswith("Z") and off_min == 0:
                return "Z"
            if tok in ("-0700", "Z0700"):
                return f"{sign}{oh:02d}{om:02d}"
            if tok in ("-07:00", "Z07:00"):
                return f"{sign}{oh:02d}:{om:02d}"
            if tok in ("-07", "Z07"):
                return f"{sign}{oh:02d}"
            if tok in ("-07:00:00", "Z07:00:00"):
                return f"{sign}{oh:02d}:{om:02d}:00"
            if tok[0] in ".,":
                digits = len(tok) - 1
                frac = f"{self.nanos:09d}"[:digits]
                if tok[1] == "9":
                    frac = frac.rstrip("0")
                    return (tok[0] + frac) if frac else ""
                return tok[0] + frac
            return tok

        return _LAYOUT.sub(repl, layout)


class GoDuration:
    """A time.Duration in nanoseconds: prints like Go's Duration.String."""

    go_type = "*time.Duration"

    def __init__(self, nanos: int) -> None:
        self.nanos = nanos

    def go_string(self) -> str:
        return format_go_duration(self.nanos)

    def go_methods(self) -> dict[str, Any]:
        return {
            "String": self.go_string,
            "Seconds": lambda: self.nanos / 1e9,
            "Minutes": lambda: self.nanos / 6e10,
            "Hours": lambda: self.nanos / 3.6e12,
            "Milliseconds": lambda: int(self.nanos / 1_000_000),
        }


def format_go_duration(nanos: int) -> str:
    """time.Duration.String."""
    if nanos == 0:
        return "0s"
    neg = nanos < 0
    u = abs(nanos)
    sign = "-" if neg else ""
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return sign + _frac(u, 3) + "µs"
        return sign + _frac(u, 6) + "ms"
    secs_text = _frac(u % 60_000_000_000, 9) + "s"
    mins = u // 60_000_000_000
    if mins == 0:
        return sign + secs_text
    hours, mins = divmod(mins, 60)
    if hours == 0:
        return f"{sign}{mins}m{secs_text}"
    return f"{sign}{hours}h{mins}m{secs_text}"


def _frac(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    frac_text = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)
