from django import template

register = template.Library()

DASH = "\u2013"  # an en dash marks a missing number


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.873 -> "87.3%"; a missing number is a dash, never "0%"."""
    if value is None or value == "":
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def num(value, digits: int = 3) -> str:
    if value is None or value == "":
        return DASH
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{int(digits)}f}"


@register.filter
def width(value) -> str:
    """A probability as a CSS width, clamped so a bad number cannot break the layout."""
    return f"{min(max(float(value or 0), 0.0), 1.0) * 100:.1f}%"
