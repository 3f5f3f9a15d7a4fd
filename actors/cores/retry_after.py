"""The one ``Retry-After`` reader: delay-seconds or an HTTP-date, capped, garbage refused.

Every edge that honours ``Retry-After`` (the ``openai`` provider, the ``cloud_api``
transport, the replay's gateway target) reads it here, so one header means one wait
everywhere; each caller only picks its cap and what an absent or unreadable header means.

The rules (RFC 9110, section 10.2.3, with two documented leniencies):

* delay-seconds: ASCII digits, e.g. ``"120"``. RFC 9110 allows only an integer; a plain
  decimal such as ``"1.5"`` is accepted too, because it is unambiguous and some proxies
  send it. A sign, an exponent, ``nan``/``inf``, underscores or non-ASCII digits make the
  value garbage (``float()`` would take all of them).
* HTTP-date: read with :func:`email.utils.parsedate_to_datetime`, so the IMF-fixdate
  (``Sun, 06 Nov 1994 08:49:37 GMT``) and the obsolete RFC 850 form are read. The date
  must name its zone: one without (the asctime form, a bare date, or ``-0000``, "zone
  unknown") is garbage rather than guessed as GMT, and any named zone is honoured. A date
  in the past means 0 s.
* Anything longer than the caller's cap is cut to the cap: a broken or hostile header
  must not bench a provider or park a message for days.
"""

from __future__ import annotations

import email.utils
import re
from typing import overload

from actors.cores._args import require_number

__all__ = ["parse_retry_after"]

_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@overload
def parse_retry_after(value: str | None, *, now: float, cap_s: float, default: float) -> float: ...


@overload
def parse_retry_after(
    value: str | None, *, now: float, cap_s: float, default: None = None
) -> float | None: ...


def parse_retry_after(
    value: str | None, *, now: float, cap_s: float, default: float | None = None
) -> float | None:
    """Return the seconds a ``Retry-After`` header value asks the caller to wait.

    Args:
        value: the raw header value, or None when the header is absent.
        now: epoch seconds, the instant an HTTP-date is measured from.
        cap_s: the longest wait honoured; a longer one (a huge number, a far date) is
            cut to it.
        default: returned as given for an absent, blank or unreadable value.

    Returns:
        Seconds in ``[0, cap_s]``, or ``default``.

    Raises:
        ValueError: ``cap_s`` is not a finite number >= 0.
    """
    cap = require_number("cap_s", cap_s, minimum=0)
    if value is None:
        return default
    text = value.strip()
    if _DELAY.fullmatch(text):
        seconds = float(text)  # a digit string too long for a float becomes inf: capped
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return default  # garbage (an empty string lands here too)
        if when.tzinfo is None:  # no zone, or -0000: the instant is unknown
            return default
        seconds = max(0.0, when.timestamp() - now)
    return min(seconds, cap)
