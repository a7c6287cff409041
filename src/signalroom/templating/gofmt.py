"""Go's fmt verbs (Sprintf, Sprint, Sprintln) for the values templates handle.

Values follow the template engine's mapping of Go types: `str` string, `bool` bool, `int`
int, `float` float64, `None` nil, `dict` map, `list`/`tuple` slice, and objects with a
`go_string()` method (Stringer) such as times and durations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")


def go_type_name(value: Any) -> str:
    """The Go type name a value stands for, as %T and error messages print it."""
    name = getattr(value, "go_type", None)
    if isinstance(name, str):
        return name
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


def _digits(value: float, prec: int | None) -> tuple[str, int]:
    """Decimal digits and decimal-point position of |value|: shortest or rounded to prec."""
    if value == 0:
        return "0", 1
    if prec is None:
        dec = Decimal(repr(abs(value)))
    else:
        dec = Decimal(abs(value))
        dec = Decimal(f"{dec:.{max(prec, 1) - 1}e}")
    _, digit_tuple, exponent = dec.normalize().as_tuple()
    digits = "".join(str(d) for d in digit_tuple).rstrip("0") or "0"
    assert isinstance(exponent, int)
    dp = len(digit_tuple) + exponent
    return digits, dp


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, verb: str) -> str:
    first = digits[0]
    rest = digits[1:]
    if prec >= 0:
        rest = (rest + "0" * prec)[:prec]
    mant = first + ("." + rest if rest else "")
    exp = dp - 1 if digits != "0" else 0
    sign = "-" if exp < 0 else "+"
    return ("-" if neg else "") + mant + verb + sign + f"{abs(exp):02d}"


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    if dp > 0:
        intpart = (digits[:dp] + "0" * max(0, dp - len(digits))) or "0"
        frac = digits[dp:]
    else:
        intpart = "0"
        frac = "0" * (-dp) + digits
    frac = (frac + "0" * prec)[:prec] if prec >= 0 else frac
    return ("-" if neg else "") + intpart + ("." + frac if frac else "")


def format_float(value: float, verb: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat(value, verb, prec, 64) for verbs e E f F g G."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = math.copysign(1.0, value) < 0
    lower = verb.lower()
    if lower in ("f",):
        if prec < 0:
            digits, dp = _digits(value, None)
            return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))
        text = f"{abs(value):.{prec}f}"
        return ("-" if neg else "") + text
    if lower == "e":
        if prec < 0:
            digits, dp = _digits(value, None)
            return _fmt_e(neg, digits, dp, len(digits) - 1, verb)
        digits, dp = _digits(value, prec + 1)
        return _fmt_e(neg, digits, dp, prec, verb)
    # g / G
    shortest = prec < 0
    digits, dp = _digits(value, None if shortest else (prec or 1))
    if prec == 0:
        prec = 1
    eprec = prec
    if shortest:
        eprec = 6
    elif eprec > len(digits) and len(digits) >= dp:
        eprec = len(digits)
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        p = len(digits) if shortest or prec > len(digits) else prec
        return _fmt_e(neg, digits, dp, p - 1, "e" if verb == "g" else "E")
    return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))


def _quote(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote(text: str) -> str:
    """strconv.Quote."""
    return _quote(text)


def format_value(value: Any, plus: bool = False) -> str:
    """%v of a value (fmt.Sprint of one operand)."""
    stringer = getattr(value, "go_string", None)
    if callable(stringer):
        return str(stringer())
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, "g", -1)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v)}" for k, v in items) + "]"
    if isinstance(value, Sequence):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    fields = getattr(value, "go_fields", None)
    if callable(fields):
        body = fields()
        if plus:
            return "{" + " ".join(f"{k}:{format_value(v, True)}" for k, v in body) + "}"
        return "{" + " ".join(format_value(v) for _, v in body) + "}"
    return str(value)


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, int | float) and not isinstance(key, bool):
        return (0, key)
    return (1, str(key))


def _pad(text: str, width: int | None, minus: bool, zero: bool) -> str:
    if width is None or len(text) >= width:
        return text
    if minus:
        return text + " " * (width - len(text))
    if zero:
        sign = ""
        if text and text[0] in "+-":
            sign, text = text[0], text[1:]
        return sign + "0" * (width - len(text) - len(sign)) + text
    return " " * (width - len(text)) + text


def _bad_verb(verb: str, value: Any) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type_name(value)}={format_value(value)})"


def _format_one(verb: str, flags: str, width: int | None, prec: int | None, value: Any) -> str:
    plus = "+" in flags
    sharp = "#" in flags
    space = " " in flags
    minus = "-" in flags
    zero = "0" in flags and not minus
    if verb == "T":
        return _pad(go_type_name(value), width, minus, False)
    if verb == "v":
        if isinstance(value, float):
            text = format_float(value, "g", -1 if prec is None else prec)
            if plus and not text.startswith(("-", "+")):
                text = "+" + text
            return _pad(text, width, minus, zero)
        if isinstance(value, int) and not isinstance(value, bool):
            return _format_int(value, "d", flags, width, prec)
        if sharp and isinstance(value, str):
            return _pad(_quote(value), width, minus, False)
        return _pad(format_value(value, plus), width, minus, False)
    if isinstance(value, bool):
        if verb == "t":
            return _pad("true" if value else "false", width, minus, False)
        return _bad_verb(verb, value)
    if isinstance(value, int):
        if verb in "bcdoOqxXU":
            return _format_int(value, verb, flags, width, prec)
        if verb in "eEfFgG":
            return _bad_verb(verb, value)
        return _bad_verb(verb, value)
    if isinstance(value, float):
        if verb in "eEfFgG":
            p = -1 if prec is None else prec
            if prec is None and verb in "eEfF":
                p = 6
            text = format_float(value, verb if verb != "F" else "f", p)
            if sharp and verb in "gG" and "." not in text and "e" not in text.lower():
                text += "."
            if (plus or space) and not text.startswith(("-", "+")):
                text = ("+" if plus else " ") + text
            elif space and text.startswith("+") and math.isinf(value) and not plus:
                text = " " + text[1:]
            if math.isinf(value) or math.isnan(value):
                return _pad(text, width, minus, False)
            return _pad(text, width, minus, zero)
        if verb in "xX":
            return _pad(float.hex(value), width, minus, zero)
        return _bad_verb(verb, value)
    if isinstance(value, str) or callable(getattr(value, "go_string", None)):
        text = value if isinstance(value, str) else format_value(value)
        if verb == "s":
            if prec is not None:
                text = text[:prec]
            return _pad(text, width, minus, zero)
        if verb == "q":
            return _pad(
                "`" + text + "`" if sharp and "`" not in text else _quote(text), width, minus, zero
            )
        if verb in "xX":
            data = text.encode()
            if prec is not None:
                data = data[:prec]
            hexed = data.hex() if verb == "x" else data.hex().upper()
            if space:
                prefix = "0x" if verb == "x" else "0X"
                hexed = " ".join(
                    (prefix if sharp else "") + hexed[i : i + 2] for i in range(0, len(hexed), 2)
                )
            elif sharp:
                hexed = ("0x" if verb == "x" else "0X") + hexed
            return _pad(hexed, width, minus, zero)
        return _bad_verb(verb, value)
    if value is None:
        return _bad_verb(verb, value)
    if isinstance(value, Mapping | list | tuple) and verb in "sdqxXfeg":
        if isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
            pairs = [
                (_format_one(verb, flags, None, prec, k), _format_one(verb, flags, None, prec, v))
                for k, v in items
            ]
            inner = " ".join(f"{k}:{v}" for k, v in pairs)
            return _pad("map[" + inner + "]", width, minus, False)
        inner = " ".join(_format_one(verb, flags, None, prec, v) for v in value)
        return _pad("[" + inner + "]", width, minus, False)
    return _bad_verb(verb, value)


def _format_int(value: int, verb: str, flags: str, width: int | None, prec: int | None) -> str:
    plus = "+" in flags
    sharp = "#" in flags
    minus = "-" in flags
    zero = "0" in flags and not minus and prec is None
    neg = value < 0
    mag = -value if neg else value
    if verb == "c":
        return _pad(chr(mag) if 0 <= value <= 0x10FFFF else "\ufffd", width, minus, False)
    if verb == "q":
        return _pad(
            "'" + (chr(value) if 0 <= value <= 0x10FFFF else "\ufffd") + "'", width, minus, False
        )
    if verb == "U":
        text = f"U+{mag:04X}"
        return _pad(text, width, minus, False)
    base_text = {
        "d": str(mag),
        "b": format(mag, "b"),
        "o": format(mag, "o"),
        "O": format(mag, "o"),
        "x": format(mag, "x"),
        "X": format(mag, "X"),
    }[verb]
    if prec is not None:
        base_text = base_text.rjust(prec, "0") if prec else ("" if mag == 0 else base_text)
    prefix = ""
    if verb == "O" or (sharp and verb == "o" and not base_text.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif sharp and verb in "xX":
        prefix = "0x" if verb == "x" else "0X"
    elif sharp and verb == "b":
        prefix = "0b"
    sign = "-" if neg else ("+" if plus else (" " if " " in flags else ""))
    text = base_text
    if zero and width is not None:
        text = text.rjust(width - len(sign) - len(prefix), "0")
    return _pad(sign + prefix + text, width, minus, False)


def sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf with Go's verbs, flags, width and precision, and its error notations."""
    out: list[str] = []
    argi = 0
    pos = 0
    n = len(fmt)
    while pos < n:
        pct = fmt.find("%", pos)
        if pct == -1:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:pct])
        m = _VERB.match(fmt, pct)
        if not m:
            out.append("%!(NOVERB)")
            break
        flags, width_s, prec_s, verb = m.groups()
        pos = m.end()
        if verb == "%":
            out.append("%")
            continue
        width: int | None = None
        prec: int | None = None
        if width_s == "*":
            if argi < len(args) and isinstance(args[argi], int):
                width = args[argi]
                if width < 0:
                    flags += "-"
                    width = -width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        elif width_s:
            width = int(width_s)
        if prec_s == "*":
            if argi < len(args) and isinstance(args[argi], int):
                prec = args[argi]
            else:
                out.append("%!(BADPREC)")
            argi += 1
        elif prec_s is not None:
            prec = int(prec_s) if prec_s else 0
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_one(verb, flags, width, prec, args[argi]))
        argi += 1
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{go_type_name(a)}={format_value(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def sprint(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = True
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(format_value(arg))
        prev_string = is_string
    return "".join(out)


def sprintln(*args: Any) -> str:
    """fmt.Sprintln: spaces always, newline at the end."""
    return " ".join(format_value(a) for a in args) + "\n"
