"""Naming a secret's environment variable in an error without ever showing the secret.

Options and config keys name the variable that holds a secret (``token_env``,
``api_key_env``, ``app_secret_env``...). A common mistake is to paste the secret itself
there, and many secrets are valid variable names as well: a Meta app secret is 32 hex
digits, a Groq key is ``gsk_`` and letters, a short token is letters and digits. An error
that says "environment variable 'gsk_...' is not set" would print the key. So errors show
the name only when it looks like a conventional variable name (UPPER_CASE, at most 64
characters), and otherwise only its length.
"""

from __future__ import annotations

import re

__all__ = ["show_env_name"]

_CONVENTIONAL = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def show_env_name(name: object) -> str:
    """``'NAME'`` for a conventional variable name, else a placeholder giving its length."""
    if isinstance(name, str) and _CONVENTIONAL.fullmatch(name):
        return repr(name)
    size = f"{len(name)} characters" if isinstance(name, str) else type(name).__name__
    return f"<{size}, not shown: not an UPPER_CASE name, it may be the secret itself>"
