"""The simulated inbound traffic: who writes, to which number, and redelivered webhooks.

Pure and seeded: the same seed gives the same sequence of messages. Each customer has a
home account (``customer % accounts``), the way a customer writes to one business number;
popularity decides how often each customer writes. A duplicate is a webhook redelivered
by WhatsApp: it resubmits a message the engine already accepted, with the same id.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import deque

from protocols import InboundMessage

__all__ = ["MAX_CUSTOMERS", "Traffic", "account_id", "customer_id", "customer_index"]

MAX_CUSTOMERS = 10_000_000
"""Customer ids are ``+1555`` and seven digits: the ``cloud_api`` transport sends to them
without the ``+`` (digits, as the Cloud API's ``to`` field wants)."""


def account_id(index: int) -> str:
    """The id of the ``index``-th simulated account."""
    return f"acct-{index:03d}"


_CUSTOMER_PREFIX = "+1555"


def customer_id(index: int) -> str:
    """The phone number of the ``index``-th simulated customer."""
    return f"{_CUSTOMER_PREFIX}{index:07d}"


def customer_index(customer: str) -> int | None:
    """The index :func:`customer_id` made ``customer`` from; None for another number."""
    digits = customer[len(_CUSTOMER_PREFIX) :]
    if not customer.startswith(_CUSTOMER_PREFIX) or not digits.isdigit():
        return None
    index = int(digits)
    return index if customer_id(index) == customer else None


class Traffic:
    """Generates inbound messages and redeliveries of accepted ones.

    Args:
        accounts: simulated WhatsApp numbers.
        customers: distinct customers, each with a home account.
        popularity: ``"uniform"`` or ``"zipf"`` (customer of rank k writes with weight
            ``k ** -zipf_s``).
        zipf_s: the Zipf exponent.
        duplicates: the fraction of submissions that are redeliveries.
        seed: the seed of the sequence.
        memory: accepted messages kept for redelivery; it must not exceed the engine's
            ``dedupe_capacity`` or a redelivery could be older than what the engine
            remembers.
    """

    def __init__(
        self,
        *,
        accounts: int,
        customers: int,
        popularity: str = "uniform",
        zipf_s: float = 1.1,
        duplicates: float = 0.0,
        seed: int = 1,
        memory: int = 10_000,
    ) -> None:
        if not 1 <= customers <= MAX_CUSTOMERS:
            raise ValueError(f"customers must be 1..{MAX_CUSTOMERS:,}, got {customers}")
        if popularity not in ("uniform", "zipf"):
            raise ValueError(f"popularity must be 'uniform' or 'zipf', got {popularity!r}")
        self.accounts = [account_id(i) for i in range(accounts)]
        self.customers = customers
        self.duplicates = duplicates
        self._rng = random.Random(seed)
        self._cum: list[float] | None = None
        if popularity == "zipf":
            self._cum = list(itertools.accumulate(k**-zipf_s for k in range(1, customers + 1)))
        self._accepted: deque[InboundMessage] = deque(maxlen=max(1, memory))
        self._seq = 0
        self.redeliveries = 0

    def next_customer(self) -> int:
        """The index of the next new message's customer (one draw; :meth:`batch` uses it).

        With ``duplicates`` 0 this is the only draw per message, so a new ``Traffic`` with
        the same arguments replays which customer wrote each message (``tail.py`` does).
        """
        if self._cum is None:
            return self._rng.randrange(self.customers)
        total = self._cum[-1]
        return min(bisect.bisect_left(self._cum, self._rng.random() * total), self.customers - 1)

    def batch(self, n: int) -> list[tuple[InboundMessage, bool]]:
        """The next ``n`` submissions; the flag is True for a redelivery."""
        out: list[tuple[InboundMessage, bool]] = []
        rng, accepted = self._rng, self._accepted
        for _ in range(n):
            if self.duplicates > 0 and accepted and rng.random() < self.duplicates:
                out.append((accepted[rng.randrange(len(accepted))], True))
                self.redeliveries += 1
                continue
            c = self.next_customer()
            self._seq += 1
            out.append(
                (
                    InboundMessage(
                        account_id=self.accounts[c % len(self.accounts)],
                        customer_id=customer_id(c),
                        message_id=f"lr.{self._seq}",
                        text=f"hello {self._seq}",
                    ),
                    False,
                )
            )
        return out

    def accepted(self, message: InboundMessage) -> None:
        """Remember an accepted message as a candidate for redelivery."""
        self._accepted.append(message)
