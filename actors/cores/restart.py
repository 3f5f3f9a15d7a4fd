"""Supervision policy for one child: exponential backoff plus OTP restart intensity.

Pure core for a supervising actor. Backoff follows Akka's ``BackoffSupervisor``
(``min * factor ** (attempt - 1)`` capped at ``max``, times ``1 + randomFactor * u``);
giving up follows OTP's intensity rule (more than ``max_restarts`` restarts within
``period_s`` seconds). Restarts are counted at the moment they are decided (the failure
time), not when the delayed restart happens, so the rule needs no timer.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from actors.cores._args import require_int, require_number

__all__ = ["GiveUp", "Restart", "RestartDecision", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart the child after ``delay_s``; ``attempt`` is 1 for the first failure of a streak."""

    delay_s: float
    attempt: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop restarting the child (and escalate); ``reason`` names the limit that was hit."""

    reason: str


RestartDecision = Restart | GiveUp


class RestartPolicy:
    """Decides, on each failure of one child, whether and when to restart it.

    Args:
        min_backoff_s: delay before the first restart of a streak (engine default 0.1).
        max_backoff_s: cap on the delay before jitter (30.0); must be >= ``min_backoff_s``.
        factor: growth of the delay per consecutive failure (2.0, >= 1).
        jitter: Akka ``randomFactor``; the delay is multiplied by ``1 + jitter * u`` with
            ``u`` uniform in [0, 1) (0.2, between 0 and 1).
        max_restarts: R, restarts allowed within ``period_s`` (5, int >= 0; 0 never restarts).
        period_s: P, the intensity window in seconds (60.0, > 0).
        reset_after_s: a child that ran this long since its last (re)start was stable, so
            its next failure starts a new streak at attempt 1 (30.0, >= 0).
        rng: source of jitter; inject a seeded ``random.Random`` for reproducible delays.

    Raises:
        ValueError: a bound is not of the documented type or range.
    """

    __slots__ = (
        "_attempt",
        "_cap_exp",
        "_factor",
        "_give_up",
        "_history",
        "_jitter",
        "_last_start",
        "_max",
        "_max_restarts",
        "_min",
        "_period",
        "_reset_after",
        "_restarts",
        "_rng",
    )

    def __init__(
        self,
        *,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        max_restarts: int = 5,
        period_s: float = 60.0,
        reset_after_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._min = require_number("min_backoff_s", min_backoff_s, minimum=0)
        self._max = require_number("max_backoff_s", max_backoff_s, minimum=self._min)
        self._factor = require_number("factor", factor, minimum=1)
        self._jitter = require_number("jitter", jitter, minimum=0, maximum=1)
        self._max_restarts = require_int("max_restarts", max_restarts, minimum=0)
        self._period = require_number("period_s", period_s, minimum=0, min_exclusive=True)
        self._reset_after = require_number("reset_after_s", reset_after_s, minimum=0)
        if rng is not None and not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random or None, got {rng!r}")
        self._rng = rng if rng is not None else random.Random()
        # Exponent from which the uncapped delay reaches max_backoff_s; clamping to it keeps
        # factor ** exponent from overflowing however long a streak grows.
        if self._min == 0.0 or self._factor == 1.0:
            self._cap_exp = math.inf
        else:
            # Logs of each side, not of the ratio: max / (subnormal min) overflows.
            ratio = math.log(self._max) - math.log(self._min)
            self._cap_exp = math.ceil(ratio / math.log(self._factor))
        # Restart times inside the window; one slot more than R is all the rule ever reads.
        self._history: deque[float] = deque(maxlen=max_restarts + 1)
        self._attempt = 0
        self._restarts = 0
        self._last_start: float | None = None
        self._give_up: GiveUp | None = None

    @property
    def restarts(self) -> int:
        """Restarts decided since construction."""
        return self._restarts

    @property
    def given_up(self) -> bool:
        """True once the intensity limit was exceeded; final."""
        return self._give_up is not None

    @property
    def attempt(self) -> int:
        """Consecutive failures in the current streak (0 before the first failure)."""
        return self._attempt

    @property
    def recent_restarts(self) -> int:
        """Restart times kept for the intensity rule (at most ``max_restarts + 1``)."""
        return len(self._history)

    def started(self, now: float) -> None:
        """Note that the child was (re)started at ``now``.

        Raises:
            RuntimeError: the policy has given up; a given-up child must not be restarted.
        """
        if self._give_up is not None:
            raise RuntimeError(f"can't handle started() when given up ({self._give_up.reason})")
        self._last_start = now

    def failed(self, now: float) -> RestartDecision:
        """Decide what to do about a failure of the child at ``now``.

        Returns:
            ``Restart(delay_s, attempt)``, or ``GiveUp(reason)`` when this restart would make
            more than ``max_restarts`` within ``period_s``; after that, always the same GiveUp.
        """
        if self._give_up is not None:
            return self._give_up
        history = self._history
        while history and now - history[0] >= self._period:
            history.popleft()
        history.append(now)
        if len(history) > self._max_restarts:
            self._give_up = GiveUp(
                f"restart intensity exceeded: more than {self._max_restarts} restarts "
                f"within {self._period:g} s"
            )
            return self._give_up
        if self._last_start is not None and now - self._last_start >= self._reset_after:
            self._attempt = 0  # it ran long enough to count as stable: new streak
        self._attempt += 1
        self._restarts += 1
        # The child is down from now on; without this a failure before the next started()
        # would still measure stability from the previous start.
        self._last_start = None
        return Restart(self.delay_for(self._attempt, self._rng.random()), self._attempt)

    def delay_for(self, attempt: int, u: float = 0.0) -> float:
        """Backoff delay for ``attempt`` (>= 1) and a uniform draw ``u`` in [0, 1)."""
        exponent = attempt - 1
        if self._min == 0.0:
            base = 0.0
        elif exponent >= self._cap_exp:
            base = self._max
        else:
            try:
                base = min(self._max, self._min * self._factor**exponent)
            except OverflowError:  # only for a tiny (subnormal) min_backoff_s
                base = self._max
        return base * (1.0 + self._jitter * u)
