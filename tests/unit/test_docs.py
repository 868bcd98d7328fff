"""The README and docs/contract.md stay true to the code: every `qbsync` command they show parses with the
real command line, every variable they name is one qbsync reads, every RPC they name is in proto/, every
link into the contract lands on a heading, and no two example calls share a request_id."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from qbsync.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONTRACT = ROOT / "docs" / "contract.md"
DOCS = (README, CONTRACT)
# Named by the docs but read by no product code: the test suite's database.
NOT_PRODUCT_VARIABLES = {"QBSYNC_TEST_DATABASE_URL"}
# Planned in the contract's "Not in this release", so in no .proto yet.
PLANNED_RPCS = {"ListDrift", "Backfill"}


def _code_blocks(path: Path) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _qbsync_invocations() -> list[tuple[str, list[str]]]:
    """Each `.venv/bin/qbsync ...` line of the docs' code blocks, as the words after `qbsync` (up to a
    comment, a pipe or a redirection), with `\\` continuations joined."""
    found = []
    for path in DOCS:
        for block in _code_blocks(path):
            for line in block.replace("\\\n", " ").splitlines():
                at = line.find(".venv/bin/qbsync ")
                if at < 0:
                    continue
                command = re.split(r"\s+#|\s\||\s2>", line[at + len(".venv/bin/qbsync ") :])[0]
                found.append((f"{path.name}: {line.strip()}", shlex.split(command)))
    return found


INVOCATIONS = _qbsync_invocations()


def test_the_docs_show_the_operator_commands() -> None:
    shown = {words[0] if words[0] != "keys" else f"keys {words[1]}" for _, words in INVOCATIONS}
    assert {"serve", "migrate", "errors", "retry", "status", "payouts", "keys create", "keys list"} <= shown


@pytest.mark.parametrize(("line", "words"), INVOCATIONS, ids=[line for line, _ in INVOCATIONS])
def test_each_shown_command_parses(line: str, words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The options and arguments a shown command uses are the command's own (parsed, not run), with the
    variables the line sets before it (options may come from them)."""
    for name, value in re.findall(r"(?:^|\s)(QBSYNC_[A-Z_]+)=(\S+)", line.split(".venv/bin/qbsync")[0]):
        monkeypatch.setenv(name, value)
    group: click.Command = main
    ctx = click.Context(main, info_name="qbsync")
    remaining = words
    while isinstance(group, click.Group):
        name, command, remaining = group.resolve_command(ctx, remaining)
        assert command is not None, f"{line}: no command {name!r}"
        ctx = click.Context(command, info_name=name, parent=ctx)
        group = command
    group.make_context(group.name or "", list(remaining), parent=ctx.parent)


def _variables_read_by_the_code() -> set[str]:
    read: set[str] = set()
    for folder in ("qbsync", "adapters", "core"):
        for source in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"QBSYNC_[A-Z_]+[A-Z]", source.read_text()))
    return read


def test_every_variable_the_docs_name_is_read_by_qbsync() -> None:
    read = _variables_read_by_the_code()
    for path in DOCS:
        named = set(re.findall(r"QBSYNC_[A-Z_]+[A-Z]", path.read_text())) - NOT_PRODUCT_VARIABLES
        # `QBSYNC_TLS_CERT`/`_KEY` style shorthands name no variable of their own.
        assert named - read == set(), f"{path.name} names variables qbsync does not read"


def _rpcs() -> set[str]:
    protos = "".join(p.read_text() for p in (ROOT / "proto").rglob("*.proto"))
    return set(re.findall(r"rpc\s+(\w+)\s*\(", protos))


def test_the_contract_names_every_rpc_and_only_real_ones() -> None:
    rpcs = _rpcs()
    text = CONTRACT.read_text()
    table_rows = re.findall(r"^\| `(\w+)[({]", text, flags=re.M)
    assert set(table_rows) == rpcs, "the contract's RPC tables and proto/ disagree"
    called = set(re.findall(r"\b([A-Z]\w+)\(", text))  # `Rpc(Request…)` is how the contract writes an RPC
    assert called - rpcs == set()
    named = set(re.findall(r"`([A-Z]\w+)`", text))
    assert named >= PLANNED_RPCS and not PLANNED_RPCS & rpcs  # planned: named as such, and not served yet


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_the_docs_land_on_headings() -> None:
    anchors = {path: {_slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M)} for path in DOCS}
    readme, contract = README.read_text(), CONTRACT.read_text()
    links = [(CONTRACT, anchor) for anchor in re.findall(r"\]\(docs/contract\.md#([^)]*)\)", readme)]
    links += [(README, anchor) for anchor in re.findall(r"\]\(#([^)]*)\)", readme)]
    links += [(CONTRACT, anchor) for anchor in re.findall(r"\]\(#([^)]*)\)", contract)]
    links += [(README, anchor) for anchor in re.findall(r"\]\(\.\./README\.md#([^)]*)\)", contract)]
    assert len(links) > 10
    for target, anchor in links:
        assert anchor in anchors[target], f"a link to {target.name}#{anchor}, which has no such heading"
    assert "](docs/contract.md" in readme and "](../README.md)" in contract
    assert "../shared/" not in readme + contract  # a clone has no such folder


def test_each_example_call_has_its_own_request_id() -> None:
    ids = []
    for path in DOCS:
        for block in _code_blocks(path):
            ids += re.findall(r"""request_?[iI]d["']?\s*[=:]\s*["']([^"']+)["']""", block)
    assert ids, "the examples carry request ids"
    assert len(ids) == len(set(ids)), f"request ids reused across examples: {sorted(ids)}"
