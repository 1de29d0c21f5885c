"""The ``%nats`` / ``%%nats`` magics: parse the line, call the API, display.

>>> %load_ext nbnats            # doctest: +SKIP
>>> %nats pub greet "hello"     # doctest: +SKIP
"""

from __future__ import annotations

from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Enum, Float, Int

from nbnats.magics import complete, core, server  # noqa: F401  (core and server register their verbs)
from nbnats.errors import NatsError
from nbnats.magics.registry import VERBS, Context, HelpShown, MagicUsageError, help_text, parse
from nbnats.magics.present import OUTPUTS, present
from nbnats.magics.wording import as_magic

for _module in ("jetstream", "kv", "objects", "schema", "stream_ops", "system", "explore"):
    try:
        __import__(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_module}":
            raise


@magics_class
class NatsMagic(Magics):
    """``%nats VERB …`` — see ``%nats --help``. ``%config NatsMagic`` lists its settings."""

    display_limit = Int(50, help="rows a %nats frame shows (the value holds them all); 0 shows every row").tag(
        config=True)
    timeout = Float(None, allow_none=True,
                    help="default seconds a %nats verb waits (each verb's own default when unset)").tag(config=True)
    output = Enum(OUTPUTS, default_value="pandas",
                  help="what %nats verbs return frames as: pandas, arrow or polars").tag(config=True)

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
        if cell is not None and self.shell is not None:
            # $name and {expr} in bodies, as IPython does in the line; line by line, since IPython's
            # expansion drops a newline that follows a {expr}
            cell = "\n".join(self.shell.var_expand(part) for part in cell.split("\n"))
        try:
            if getattr(args, "timeout", "absent") is None and self.timeout is not None:
                args.timeout = self.timeout
            return present(v.run(args, Context(shell=self.shell, cell=cell)), self.display_limit, self.output)
        except NatsError as exc:
            worded = as_magic(exc)
            if worded is exc:
                raise
            raise worded from None


def load(ip) -> None:
    """Register the magics (errors show as one line via ``NatsError._render_traceback_``)."""
    ip.register_magics(NatsMagic)
    complete.install(ip)


NatsMagics = NatsMagic          # the name before the settings

__all__ = ["NatsMagic", "NatsMagics", "load", "help_text"]
