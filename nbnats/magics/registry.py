"""The ``%nats`` grammar: verbs register here, argparse parses, errors say what to type.

A verb is ``@verb("stream add", help, arg("name"), arg("--subjects"))`` on a
function ``run(args, ctx)`` that calls the Python API and returns what to show.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbnats.errors import NatsError


class MagicUsageError(NatsError):
    """The ``%nats`` line could not be parsed."""


class HelpShown(Exception):
    """``--help`` was printed; nothing to run."""


@dataclass
class Verb:
    path: tuple[str, ...]
    help: str
    arguments: tuple
    run: Callable
    cell: bool = False          # takes the cell body


@dataclass
class Context:
    """What a verb gets besides its parsed arguments."""

    shell: Any = None
    cell: str | None = None
    extras: dict = field(default_factory=dict)


VERBS: dict[tuple[str, ...], Verb] = {}
SECRET_FLAGS = {"--password", "--token", "--nkey", "--creds"}
GROUP_HELP: dict[str, str] = {}


def arg(*names: str, **kwargs: Any) -> tuple:
    """One ``add_argument`` call, kept for later."""
    return (names, kwargs)


def verb(path: str, help: str, *arguments: tuple, cell: bool = False):
    """Register ``run(args, ctx)`` as the verb ``path`` ("pub", "stream add" …)."""
    def register(fn: Callable) -> Callable:
        VERBS[tuple(path.split())] = Verb(tuple(path.split()), help, arguments, fn, cell)
        return fn
    return register


def group(name: str, help: str) -> None:
    """Describe a verb group such as ``stream`` for ``%nats --help``."""
    GROUP_HELP[name] = help


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and suggests the closest word."""

    def __init__(self, *a: Any, **kw: Any):
        kw.setdefault("add_help", True)
        kw.setdefault("allow_abbrev", False)
        super().__init__(*a, **kw)

    def exit(self, status: int = 0, message: str | None = None):
        if status == 0:
            raise HelpShown()
        raise MagicUsageError(message or "invalid arguments", f"see %{self.prog} --help")

    def error(self, message: str):
        fix = f"see %{self.prog} --help"
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), choices, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise MagicUsageError(f"unknown command '{m.group(1)}' for %{self.prog}",
                                  f"{hint}choose from {', '.join(choices)}")
        m = re.search(r"unrecognized arguments: (.*)", message)
        if m:
            unknown = m.group(1).split()[0]
            options = [o for o in self._option_string_actions if o.startswith("--")]
            close = difflib.get_close_matches(unknown, options, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise MagicUsageError(f"%{self.prog} does not know {unknown}", f"{hint}{fix}")
        raise MagicUsageError(f"%{self.prog}: {message}", fix)


def build_parser() -> Parser:
    """The whole ``%nats`` parser from the registered verbs."""
    root = Parser(prog="nats", description="NATS from the notebook. `%nats VERB --help` for one verb.")
    subs = root.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    groups: dict[str, Any] = {}
    root.verb_parsers = {}
    for path, v in sorted(VERBS.items()):
        if len(path) == 1:
            p = subs.add_parser(path[0], help=_escape(v.help), description=v.help, prog=f"nats {path[0]}")
        else:
            if path[0] not in groups:
                gp = subs.add_parser(path[0], help=GROUP_HELP.get(path[0], ""),
                                     description=GROUP_HELP.get(path[0], ""), prog=f"nats {path[0]}")
                groups[path[0]] = gp.add_subparsers(dest="subverb", metavar="SUBVERB", parser_class=Parser)
            p = groups[path[0]].add_parser(path[1], help=_escape(v.help), description=v.help,
                                           prog=f"nats {path[0]} {path[1]}")
        for names, kwargs in v.arguments:
            if "help" in kwargs:
                kwargs = {**kwargs, "help": _escape(kwargs["help"])}
            p.add_argument(*names, **kwargs)
        p.set_defaults(_verb=v)
        root.verb_parsers[path] = p
    return root


def _escape(text: str) -> str:
    return text.replace("%", "%%")   # argparse %-formats help strings


def tokenize(line: str) -> list[str]:
    """Split a magic line like a shell, keeping an unquoted JSON body whole.

    >>> tokenize('pub orders.new {"id": 1, "note": "a b"} --count 2')
    ['pub', 'orders.new', '{"id": 1, "note": "a b"}', '--count', '2']
    >>> tokenize('pub greet "hello world"')
    ['pub', 'greet', 'hello world']
    >>> tokenize("pub s '{x: [1, 2]}' --count 2")
    ['pub', 's', '{x: [1, 2]}', '--count', '2']
    """
    for start in _unquoted_openers(line):
        end = _literal_end(line, start)
        if end is None:
            continue
        return _shlex(line[:start]) + [line[start:end]] + _shlex(line[end:])
    return _shlex(line)


def _unquoted_openers(line: str):
    """Positions of '{' or '[' that start a word outside any quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "{[" and (i == 0 or line[i - 1].isspace()):
            yield i


def _literal_end(line: str, start: int) -> int | None:
    """End of a JSON (or Python dict/list literal) value starting at ``start``."""
    try:
        return json.JSONDecoder().raw_decode(line, start)[1]
    except json.JSONDecodeError:
        pass
    depth, quote, i = 0, None, start
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                try:
                    ast.literal_eval(line[start:i + 1])
                except (ValueError, SyntaxError):
                    return None
                return i + 1
        i += 1
    return None


def _shlex(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise MagicUsageError(f"the line has unbalanced quotes ({exc})",
                              "close every ' and \" you open, or put the body in a %%nats cell") from None


def parse(line: str) -> argparse.Namespace:
    """Parse a ``%nats`` line into arguments; ``_verb`` holds the verb to run."""
    tokens = tokenize(line)
    parser = build_parser()
    if not tokens:
        raise MagicUsageError("%nats needs a command", "try %nats --help, or e.g. %nats sub 'orders.>'")
    args, extra = parser.parse_known_args(tokens)
    if extra and SECRET_FLAGS & set(tokens):
        # The extra words may be the rest of a secret typed unquoted: never echo them.
        v = getattr(args, "_verb", None)
        raise MagicUsageError(f"%nats {' '.join(v.path) if v else ''} got {len(extra)} word(s) more than it takes",
                              "quote a value that contains spaces, e.g. --password 'two words'")
    if extra:
        v = getattr(args, "_verb", None)
        owner = parser.verb_parsers.get(v.path) if v else parser
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def help_text() -> str:
    """``%nats --help`` as text."""
    return build_parser().format_help()
