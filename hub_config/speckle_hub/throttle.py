"""Failed logins slow down the address they come from; they never lock an account.

NativeAuthenticator locked a *name* after a few wrong passwords, so anyone could lock anyone out
(the admin included) by typing their name. Here each (address, name) pair gets ``free`` failures,
then must wait 1, 2, 4, ... seconds (up to ``max_wait``) before its next try; an address that
fails on many names (guessing accounts) waits as a whole. The real user, from their own
address, is never kept out by someone else's failures; a success clears their pair.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

__all__ = ["LoginThrottle"]

#: Failures an address may make over all names before it waits as a whole, per ``free``.
ADDRESS_FACTOR = 5
#: Entries kept (the oldest go first): memory stays bounded whatever an attacker sends.
MAX_ENTRIES = 20_000


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


class LoginThrottle:
    """Counts failed logins per (address, name) and per address, and says how long to wait.

    Parameters
    ----------
    free : int
        Failures allowed before waiting starts; 0 turns throttling off.
    max_wait : float
        The longest wait, in seconds.
    clock : callable, optional
        Seconds, monotonic (tests pass their own).
    """

    def __init__(self, free: int, max_wait: float, clock=time.monotonic):
        self.free, self.max_wait, self.clock = int(free), float(max_wait), clock
        self._records: collections.OrderedDict[tuple, _Record] = collections.OrderedDict()

    def _wait_of(self, key: tuple, free: int) -> float:
        record = self._records.get(key)
        if record is None or record.failures < free:
            return 0.0
        delay = min(2.0 ** (record.failures - free), self.max_wait)
        return max(0.0, record.last + delay - self.clock())

    def wait(self, address: str, name: str) -> float:
        """Seconds before ``address`` may try ``name`` again (0: now)."""
        if self.free <= 0:
            return 0.0
        return max(self._wait_of((address, name), self.free),
                   self._wait_of((address,), self.free * ADDRESS_FACTOR))

    def failure(self, address: str, name: str) -> None:
        """Count a failed login."""
        if self.free <= 0:
            return
        now = self.clock()
        for key in ((address, name), (address,)):
            record = self._records.pop(key, None) or _Record()
            record.failures += 1
            record.last = now
            self._records[key] = record
        while len(self._records) > MAX_ENTRIES:
            self._records.popitem(last=False)

    def success(self, address: str, name: str) -> None:
        """A login worked: that pair starts afresh (the address keeps its count of other names)."""
        self._records.pop((address, name), None)
