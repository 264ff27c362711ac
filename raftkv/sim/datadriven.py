"""Data-driven test files: commands, each followed by the output it must give.

The format is the one of cockroachdb's ``datadriven`` package, which etcd's
raft uses for its interaction tests::

    # a comment; comments and blank lines between cases are kept as they are
    start n1 n2 n3
    ----
    expected output, line by line,
    up to the next blank line (or the end of the file)

    propose n1 user=kj
    ----

A case is one command line, a ``----`` line, and the expected output. An
empty output is a ``----`` line followed by a blank line (or the end of the
file). Output that itself contains blank lines is fenced by doubled
separators, and ends at a ``----`` line directly followed by another::

    dump
    ----
    ----
    first paragraph

    second paragraph
    ----
    ----

Expected lines are compared exactly, trailing spaces included.

The command line is a name followed by arguments separated by spaces:
``word``, ``key=value`` or ``key=(v1,v2,...)`` (spaces inside the brackets are
allowed). What the words mean is up to the caller: :func:`run_file` parses a
file, hands each case to a callback that returns the actual output, and
either compares (raising :class:`Mismatch` with a diff of the first case that
differs) or, with ``rewrite``, writes the actual outputs back into the file in
place, leaving commands and comments untouched.
"""

from __future__ import annotations

import difflib
import pathlib
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Arg", "Case", "Mismatch", "parse", "parse_command", "render", "run_file"]

SEPARATOR = "----"


@dataclass(frozen=True)
class Arg:
    """One argument of a command line: ``key``, ``key=value`` or ``key=(a,b)``."""
    key: str
    values: tuple[str, ...] = ()

    @property
    def value(self) -> str:
        if len(self.values) != 1:
            raise ValueError(f"argument {self.key} takes one value, got {len(self.values)}")
        return self.values[0]


@dataclass
class Case:
    line: int                # 1-based line number of the command in its file
    command: str             # the command line as written
    expected: str            # expected output: lines each ending in "\n", or ""
    preamble: list[str] = field(default_factory=list)  # comment and blank lines before the command

    @property
    def name(self) -> str:
        return self.command.split(None, 1)[0]

    @property
    def rest(self) -> str:
        """The command line after its name, as written (for free text)."""
        parts = self.command.split(None, 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def args(self) -> list[Arg]:
        return parse_command(self.command)[1]


class Mismatch(AssertionError):
    """A case's actual output differs from its expected block."""


def parse_command(line: str) -> tuple[str, list[Arg]]:
    tokens: list[str] = []
    current, depth = "", 0
    for ch in line.strip():
        if ch.isspace() and depth == 0:
            if current:
                tokens.append(current)
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    if depth:
        raise ValueError(f"unbalanced brackets in {line!r}")
    if current:
        tokens.append(current)
    if not tokens:
        raise ValueError("empty command line")
    args = []
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq:
            args.append(Arg(key))
        elif value.startswith("(") and value.endswith(")"):
            args.append(Arg(key, tuple(v.strip() for v in value[1:-1].split(",") if v.strip())))
        else:
            args.append(Arg(key, (value,)))
    return tokens[0], args


def parse(text: str) -> tuple[list[Case], list[str]]:
    """The cases of a file, and the lines after the last one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()   # the final newline ends the last line; it is not an empty line
    cases: list[Case] = []
    preamble: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            preamble.append(line)
            i += 1
            continue
        start = i
        i += 1
        if i >= len(lines) or lines[i] != SEPARATOR:
            raise ValueError(f"line {start + 1}: expected {SEPARATOR!r} after the command {line!r}")
        i += 1
        output: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:
            i += 1
            while not (i + 1 < len(lines) and lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
                if i >= len(lines):
                    raise ValueError(f"line {start + 1}: output fenced by {SEPARATOR!r} lines is not closed")
                output.append(lines[i])
                i += 1
            i += 2
            if i < len(lines) and lines[i].strip():
                raise ValueError(f"line {i + 1}: expected a blank line after the fenced output")
        else:
            while i < len(lines) and lines[i] != "":
                output.append(lines[i])
                i += 1
        i += 1   # the blank line that ends the case
        cases.append(Case(start + 1, line, "".join(f"{o}\n" for o in output), preamble))
        preamble = []
    return cases, preamble


def _render_case(case: Case, output: str) -> list[str]:
    body = output[:-1].split("\n") if output else []
    lines = [*case.preamble, case.command, SEPARATOR]
    if any(not b or b == SEPARATOR for b in body):
        return lines + [SEPARATOR, *body, SEPARATOR, SEPARATOR]
    return lines + body


def render(cases: list[Case], trailer: list[str], outputs: list[str] | None = None) -> str:
    """The file text for these cases, with ``outputs`` in place of the expected ones."""
    outputs = outputs if outputs is not None else [c.expected for c in cases]
    lines: list[str] = []
    for n, (case, output) in enumerate(zip(cases, outputs)):
        lines += _render_case(case, output)
        if n + 1 < len(cases) or trailer:
            lines.append("")
    lines += trailer
    return "\n".join(lines) + "\n" if lines else ""


def _normalize(output: str) -> str:
    return output if not output or output.endswith("\n") else output + "\n"


def run_file(path: str | pathlib.Path, handle: Callable[[Case], str], rewrite: bool = False) -> list[str]:
    """Run every case of a file through ``handle`` in order; compare or rewrite.

    Returns the actual outputs. An exception from ``handle`` propagates with a
    note naming the file, line and command.
    """
    path = pathlib.Path(path)
    cases, trailer = parse(path.read_text(encoding="utf-8"))
    outputs: list[str] = []
    for case in cases:
        try:
            outputs.append(_normalize(handle(case)))
        except Exception as exc:
            exc.add_note(f"at {path}:{case.line}: {case.command}")
            raise
    if rewrite:
        text = render(cases, trailer, outputs)
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
        return outputs
    differing = [(c, o) for c, o in zip(cases, outputs) if c.expected != o]
    if differing:
        case, actual = differing[0]
        diff = difflib.unified_diff(case.expected.splitlines(), actual.splitlines(),
                                    "expected", "actual", lineterm="", n=3)
        more = (f"\n({len(differing) - 1} later case(s) differ too)" if len(differing) > 1 else "")
        raise Mismatch(f"{path}:{case.line}: output of '{case.command}' differs\n"
                       + "\n".join(diff) + more
                       + "\nrerun with --rewrite (or RAFTKV_REWRITE=1) if the new output is intended")
    return outputs
