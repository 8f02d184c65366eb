"""Numbers for people: no NaN shown to a reader, dollars with sensible precision."""

import math


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``–`` for a missing value."""
    if missing(v):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def usd(v) -> str:
    """Dollars: whole above $100, cents above $1, four decimals down to $0.001, else two significant digits."""
    if missing(v):
        return "–"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    if v == 0 or abs(v) >= 0.001:
        return f"${v:.4f}"
    return f"${v:.{1 - math.floor(math.log10(abs(v)))}f}"  # two significant digits, no exponent
