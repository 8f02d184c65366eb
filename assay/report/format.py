"""Numbers for people: no NaN shown to a reader, dollars with sensible precision."""

import math
import numbers


def missing(v) -> bool:
    """None, NaN (any float type) or pandas' NA/NaT."""
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, int)):
        return math.isnan(float(v))
    return False


def num(v, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``–`` for a missing value."""
    if missing(v):
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}f}"
    return str(v)


def usd(v) -> str:
    """Dollars: whole above $100, cents above $1, four decimals down to $0.001, else two significant digits."""
    if missing(v):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    if v == 0 or abs(v) >= 0.001:
        return f"${v:.4f}"
    return f"${v:.{1 - math.floor(math.log10(abs(v)))}f}"  # two significant digits, no exponent


def interval(lo, hi, digits: int = 3) -> str:
    """``[0.812, 0.871]``; empty when the run has no interval (``bootstrap: 0``)."""
    if missing(lo) or missing(hi):
        return ""
    return f"[{num(float(lo), digits)}, {num(float(hi), digits)}]"


def with_interval(v, lo, hi, digits: int = 3) -> str:
    """``0.853 [0.833, 0.873]``, or just the value without an interval."""
    ci = interval(lo, hi, digits)
    return f"{num(v if missing(v) else float(v), digits)} {ci}".strip()


def signed(v, digits: int = 3) -> str:
    """A difference with its sign: ``+0.020``, ``−0.056``."""
    if missing(v):
        return "–"
    v = float(v)
    return ("+" if v >= 0 else "−") + f"{abs(v):.{digits}f}"


def count(v) -> str:
    """A whole number with thousands separators."""
    if missing(v):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{int(round(float(v))):,}"


def volume(v) -> str:
    """Requests a month, short: ``2,000``, ``60.7M``, ``1.2B``."""
    if missing(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "never"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if abs(v) >= scale:
            scale = 1e3 if suffix == "k" else scale
            text = f"{v / scale:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{v:,.0f}"


def seconds(v) -> str:
    """A latency: ``0.77 s``, ``41 ms``, ``110 µs``."""
    if missing(v):
        return "–"
    v = float(v)
    if v >= 1 or v == 0:
        return f"{v:.2f} s"
    if v >= 0.001:
        return f"{v * 1000:.0f} ms"
    return f"{v * 1e6:.0f} µs"


def pvalue(v) -> str:
    if missing(v):
        return "–"
    v = float(v)
    return "< 0.001" if v < 0.001 else f"{v:.3f}"
