"""docs/natscli.md stays true: its verbs and names exist, every verb is in it, its counts add up.

The page maps every natscli leaf command to a ``%nats`` verb and a Python name
(or says why there is none). These tests walk the registry and ``nbnats`` so a
verb renamed, dropped or added without a row fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import nbnats
import nbnats.magics  # noqa: F401  (registers every verb)
from nbnats.magics.registry import VERBS

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "natscli.md"
STATUSES = ("covered", "not applicable", "left")
MAGIC = re.compile(r"`%%?nats ([^`]+)`")
PYTHON = re.compile(r"`nbnats\.([A-Za-z_][\w.]*)`")

# The natscli commands that docs/API.md's "Everything natscli does that fits a notebook" promises.
CONTRACT = ["stream report", "stream subjects", "stream find", "stream rmm", "stream copy", "stream seal",
            "stream gaps", "stream backup", "stream restore", "stream state", "consumer edit", "consumer report",
            "consumer pause", "consumer resume", "consumer unpin", "consumer reset", "consumer graph", "consumer sub",
            "kv compact", "object watch", "object seal", "server report connections", "server report jetstream",
            "server report accounts", "server report health", "server list", "server ping",
            "server check jetstream", "server check connection", "counter increment", "counter get", "counter list",
            "trace", "bench pub", "bench sub", "bench service request", "bench js pub sync", "rtt"]


def _cells(line: str) -> list[str]:
    """A table row's cells; ``\\|`` inside a cell is a literal bar."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def _table() -> list[dict]:
    lines = MAP.read_text(encoding="utf-8").splitlines()
    start = lines.index("| natscli | status | %nats | Python | note |")
    assert lines[start + 1].startswith("|---"), "the table's header is not followed by its separator"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == 5, f"a row of docs/natscli.md has {len(cells)} cells, not 5: {line}"
        natscli, status, magic, python, note = cells
        rows.append({"natscli": natscli.strip("`"), "status": status, "magic": magic, "python": python,
                     "note": note, "line": line})
    return rows


ROWS = _table()


def _verb_of(text: str) -> tuple[tuple[str, ...], list[str]]:
    """``server report jetstream`` → (("server", "report"), ["jetstream"]): the registered verb and what follows."""
    words = shlex.split(text)
    for n in (2, 1):
        if tuple(words[:n]) in VERBS:
            return tuple(words[:n]), words[n:]
    raise AssertionError(f"`%nats {text}` in docs/natscli.md is no registered verb")


def _table_verbs() -> set[tuple[str, ...]]:
    return {_verb_of(m)[0] for row in ROWS for m in MAGIC.findall(row["magic"])}


def _own_verbs() -> list[str]:
    text = MAP.read_text(encoding="utf-8")
    line = next((ln for ln in text.splitlines() if ln.startswith("own verbs: ")), None)
    assert line is not None, "docs/natscli.md lost its 'own verbs: ' line (the verbs with no natscli command)"
    return MAGIC.findall(line)


def _resolve(dotted: str):
    obj = nbnats
    for part in dotted.split("."):
        assert hasattr(obj, part), f"docs/natscli.md names nbnats.{dotted}, but {part!r} is not there"
        obj = getattr(obj, part)
    return obj


def test_the_table_is_whole():
    assert len(ROWS) > 200, f"docs/natscli.md lists {len(ROWS)} natscli commands; natscli has over 200"
    names = [r["natscli"] for r in ROWS]
    assert len(names) == len(set(names)), f"rows repeated: {sorted({n for n in names if names.count(n) > 1})}"
    for row in ROWS:
        assert row["status"] in STATUSES, f"status {row['status']!r} of {row['natscli']} is none of {STATUSES}"
        assert re.fullmatch(r"[a-z][a-z0-9 -]*", row["natscli"]), f"odd natscli command {row['natscli']!r}"
        named = MAGIC.findall(row["magic"]) or PYTHON.findall(row["python"])
        if row["status"] == "covered":
            assert named, f"{row['natscli']} is covered but names no %nats verb and no Python name"
        else:
            assert not named, f"{row['natscli']} is {row['status']} yet names {named}"
            assert len(row["note"]) > 15, f"{row['natscli']} is {row['status']}: its note must say why"


def test_counts_at_the_top_match_the_table():
    head = MAP.read_text(encoding="utf-8").split("| natscli |")[0]
    m = re.search(r"\*\*(\d+) covered · (\d+) not applicable · (\d+) left\*\* — of (\d+) natscli leaf commands",
                  head)
    assert m, "docs/natscli.md must say '**N covered · N not applicable · N left** — of N natscli leaf commands'"
    said = dict(zip(STATUSES + ("all",), map(int, m.groups())))
    counted = {s: sum(r["status"] == s for r in ROWS) for s in STATUSES}
    counted["all"] = len(ROWS)
    assert said == counted


def test_every_covered_verb_is_registered_with_its_choices():
    checked = 0
    for row in ROWS:
        for text in MAGIC.findall(row["magic"]):
            path, rest = _verb_of(text)
            positionals = [kw for names, kw in VERBS[path].arguments if not names[0].startswith("-")]
            if positionals and positionals[0].get("choices") and rest and not rest[0].startswith("-"):
                assert rest[0] in positionals[0]["choices"], (
                    f"`%nats {text}`: {rest[0]!r} is not one of {positionals[0]['choices']}")
            flags = {n for names, _ in VERBS[path].arguments for n in names if n.startswith("-")}
            for word in rest:
                if word.startswith("--"):
                    assert word in flags, f"`%nats {text}`: {' '.join(path)} has no flag {word}"
            checked += 1
    assert checked > 60


def test_every_registered_verb_is_in_the_table_or_listed_as_nbnatss_own():
    own = {_verb_of(v)[0] for v in _own_verbs()}
    in_table = _table_verbs()
    assert not own & in_table, f"listed both as own and in the table: {sorted(own & in_table)}"
    missing = sorted(" ".join(p) for p in set(VERBS) - in_table - own)
    assert not missing, f"registered verbs missing from docs/natscli.md (add a row, or the own verbs line): {missing}"


def test_every_python_name_exists_on_nbnats():
    names = {n for row in ROWS for n in PYTHON.findall(row["python"])}
    assert len(names) > 50
    for dotted in sorted(names):
        assert callable(_resolve(dotted)), f"nbnats.{dotted} is not callable"


def test_the_contract_s_natscli_verbs_are_covered():
    status = {r["natscli"]: r["status"] for r in ROWS}
    not_covered = {c: status.get(c, "absent") for c in CONTRACT if status.get(c) != "covered"}
    assert not not_covered, f"natscli commands the contract promises, not covered in the map: {not_covered}"


@pytest.mark.parametrize("doc", ["docs/API.md"])
def test_the_api_doc_links_to_the_map_in_its_extensions(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "## Extensions" in text
    extensions = text.split("## Extensions", 1)[1]
    assert re.search(r"\]\((?:\./)?natscli\.md\)", extensions), f"{doc}'s Extensions part does not link natscli.md"
    assert MAP.exists()
