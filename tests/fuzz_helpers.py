"""The fuzz suite's harness: run one case under a time and memory cap and classify what came out.

A case passes when it returns a result the caller accepts or raises an :class:`xaikit.XaikitError` whose
message names the input; a raw library exception, a ``MemoryError`` under the cap, or running past the time
limit fails it. Outcomes are tallied per suite so that a run can print (and a report quote) how many cases ran.
"""
from __future__ import annotations

import contextlib
import resource
import signal
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from xaikit.errors import XaikitError

#: Per-case limits: seconds of wall time, and bytes of address space above what the process already maps.
TIME_LIMIT_S = 10
MEMORY_HEADROOM = 1536 * 2**20


class CaseTimeout(BaseException):
    """Raised by the alarm when a case runs past its time limit (a BaseException: nothing may swallow it)."""


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> str:
        return f"{self.total} cases: " + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def limits(seconds: float = TIME_LIMIT_S, headroom: int = MEMORY_HEADROOM):
    """Address-space cap (current mapping + ``headroom``) and a wall-clock alarm around one case."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))

    def alarm(signum, frame):
        raise CaseTimeout(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_case(tally: Tally, name: str, call: Callable[[], Any], check: Callable[[Any], None] | None = None,
             names: str | None = None) -> Any:
    """Run ``call`` under :func:`limits`; record ``ok``, ``xaikit:<Class>`` or ``RAW:<Class>``.

    ``check(result)`` validates a returned result (raise AssertionError for a wrong answer); ``names`` is the
    text an XaikitError's message must contain (the file or argument at fault).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with limits():
                result = call()
            if check is not None:
                check(result)
    except XaikitError as exc:
        if names is not None and names not in str(exc):
            tally.outcomes["UNNAMED:" + type(exc).__name__] += 1
            tally.failures.append(f"{name}: {type(exc).__name__} does not name {names!r}: {exc}")
        else:
            tally.outcomes["xaikit:" + type(exc).__name__] += 1
        return None
    except AssertionError as exc:
        tally.outcomes["WRONG"] += 1
        tally.failures.append(f"{name}: wrong result: {exc}")
        return None
    except (Exception, CaseTimeout) as exc:  # noqa: BLE001 - classifying every escape is the point of the harness
        kind = "HANG" if isinstance(exc, CaseTimeout) else "RAW:" + type(exc).__name__
        tally.outcomes[kind] += 1
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
        tally.failures.append(f"{name}: {kind} at {where}: {str(exc)[:200]}")
        return None
    tally.outcomes["ok"] += 1
    return result


def assert_clean(tally: Tally) -> None:
    """Fail listing every case that escaped as a raw exception, a hang, a wrong or an unnamed error."""
    print(tally.summary())
    assert not tally.failures, (f"{len(tally.failures)} of {tally.total} cases failed:\n"
                                + "\n".join(tally.failures[:80]))
