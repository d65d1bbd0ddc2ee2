"""Path-parameter templates (``/pets/{id}``), split once at config load."""

from __future__ import annotations

import re


def split_params(template: str, param_names: tuple[str, ...]) -> list[str]:
    """``"a {x} b"`` -> ``["a ", "x", " b"]``: odd items name a parameter, even ones are text.

    Only the route's own parameters are slots; other braces (JSON objects) stay text.
    """
    if not param_names:
        return [template]
    pattern = re.compile("\\{(" + "|".join(re.escape(name) for name in param_names) + ")\\}")
    return pattern.split(template)
