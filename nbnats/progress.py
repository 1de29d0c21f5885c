"""Progress bars that work in a notebook and in a terminal (tqdm.auto).

>>> bar = progress_bar(10, "demo", enabled=False); bar.update(10); bar.close()
"""

from __future__ import annotations


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, desc: str, enabled: bool | None = None, threshold: int = 50_000,
                 unit: str = "msg"):
    """A tqdm bar for long jobs; silent when ``enabled`` is False or the job is small.

    ``enabled=None`` shows the bar only when ``total`` reaches ``threshold``;
    ``unit="B"`` counts bytes (shown as KB, MB …).
    """
    if enabled is False or (enabled is None and total < threshold):
        return _Silent()
    from tqdm.auto import tqdm
    scaled = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, desc=desc, unit=unit, leave=False, **scaled)
