"""The ``%nats`` / ``%%nats`` magics: parse the line, call the API, display.

>>> %load_ext nbnats            # doctest: +SKIP
>>> %nats pub greet "hello"     # doctest: +SKIP
"""

from __future__ import annotations

from IPython.core.magic import Magics, line_cell_magic, magics_class

from nbnats.magics import core, server  # noqa: F401  (registers the core and server verbs)
from nbnats.errors import NatsError
from nbnats.magics.registry import VERBS, Context, HelpShown, MagicUsageError, help_text, parse
from nbnats.magics.wording import as_magic

for _module in ("jetstream", "kv", "objects", "schema"):
    try:
        __import__(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_module}":
            raise


@magics_class
class NatsMagics(Magics):
    """``%nats VERB …`` — see ``%nats --help``."""

    @line_cell_magic
    def nats(self, line: str, cell: str | None = None):
        """NATS from the notebook: %nats --help lists the verbs."""
        try:
            args = parse(line)
        except HelpShown:
            return None
        v = getattr(args, "_verb", None)
        if v is None:
            group = getattr(args, "verb", None)
            subs = sorted(p[1] for p in VERBS if p[0] == group and len(p) == 2)
            raise MagicUsageError(f"%nats {group} needs a subcommand", f"choose from {', '.join(subs)}")
        if cell is not None and not v.cell:
            raise MagicUsageError(f"%%nats {' '.join(v.path)} takes no cell body",
                                  "use the one-line %nats form")
        try:
            return v.run(args, Context(shell=self.shell, cell=cell))
        except NatsError as exc:
            worded = as_magic(exc)
            if worded is exc:
                raise
            raise worded from None


def load(ip) -> None:
    """Register the magics (errors show as one line via ``NatsError._render_traceback_``)."""
    ip.register_magics(NatsMagics)


__all__ = ["NatsMagics", "load", "help_text"]
