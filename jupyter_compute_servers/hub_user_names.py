"""What a Hub user's name must be, wherever a request names one.

The rule lives here once; the user's server and the control plane each raise
their own error type when it is broken (``user_name_problem`` says what is
wrong, or ``None``).
"""

from __future__ import annotations

from typing import Any

#: The longest Hub user name taken (JupyterHub's own limit is 255).
MAX_NAME = 255

PROBLEM = f"user must be a Hub user's name (1 to {MAX_NAME} characters, no control characters)."


def user_name_problem(value: Any) -> str | None:
    """Why ``value`` is not a Hub user's name as a request gives it, or ``None`` if it is."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_NAME
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        return PROBLEM
    return None
