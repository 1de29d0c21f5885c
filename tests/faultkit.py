"""Small helpers shared by the fault and cluster tests."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)
    return time.monotonic() - start


def lost(case: str, expected, got, **figures) -> list:
    """What of ``expected`` is missing from ``got``; printed either way (pytest -s shows it)."""
    missing = sorted(set(expected) - set(got))
    extra = "".join(f", {k}={v}" for k, v in figures.items())
    print(f"\n[{case}] lost: {len(missing) and missing[:10] or 'nothing'} "
          f"({len(got)} of {len(expected)} received{extra})")
    return missing
