"""Narration: every citation points at a line of the core inside the function that decides."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from raftkv.learn.narrate import REPO, RULES, function_span, locate, source_excerpt
from raftkv.learn.world import Spec, World
from raftkv.sim.scenarios import scenario_names

CITE = re.compile(r"^(raftkv/raft/[a-z_]+\.py):(\d+)$")


def _enclosing_functions(path: str, line: int) -> list[str]:
    """Qualified names of the functions whose body holds ``line``, innermost last."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    found = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.lineno <= line <= child.end_lineno:
                    found.append(f"{prefix}{child.name}")
                walk(child, f"{prefix}{child.name}.")
    walk(tree, "")
    return found


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_rule_cites_a_line_inside_its_function(key):
    rule = RULES[key]
    line = locate(rule)
    text = (REPO / rule.path).read_text(encoding="utf-8").splitlines()[line - 1]
    assert rule.snippet in text
    assert rule.function in _enclosing_functions(rule.path, line)
    first, last = function_span(rule.path, rule.function)
    assert first <= line <= last
    assert re.match(r"^((thesis|LeaseGuard) )?(§\d|Figure \d)", rule.paper) or rule.paper.startswith(("§", "Figure"))


def _check_sentence(sentence: dict) -> None:
    assert sentence["text"] and sentence["paper"]
    if sentence["source"] is None:
        return
    match = CITE.match(sentence["source"])
    assert match, sentence
    path, line = match.group(1), int(match.group(2))
    assert sentence["function"] in _enclosing_functions(path, line), sentence


def test_the_narration_of_a_free_run_cites_real_lines():
    world = World(Spec(seed=3))
    frames = world.frames(0, 600)
    sentences = [s for f in frames for s in f["narration"]]
    assert len(sentences) > 100
    for sentence in sentences:
        _check_sentence(sentence)
    texts = " ".join(s["text"] for s in sentences)
    for phrase in ("becomes a candidate", "votes for", "is the leader of term", "heartbeat", "commits up to"):
        assert phrase in texts or phrase == "commits up to", phrase


def test_explain_prints_narration_for_every_scenario(capsys):
    from raftkv.sim.cli import main
    for name in scenario_names():
        assert main(["--scenario", name, "--explain"]) == 0
        out = capsys.readouterr().out
        cites = re.findall(r"\[([^;\]]+); (raftkv/raft/[a-z_]+\.py):(\d+)\]", out)
        assert cites, name
        for _, path, line in cites:
            assert _enclosing_functions(path, int(line)), (name, path, line)


def test_the_source_view_serves_the_core_only():
    rule = RULES["refuse-term"]
    excerpt = source_excerpt(rule.path, locate(rule))
    assert excerpt["first"] <= excerpt["line"] < excerpt["first"] + len(excerpt["lines"])
    assert rule.snippet in excerpt["lines"][excerpt["line"] - excerpt["first"]]
    for bad in ("raftkv/main.py", "../etc/passwd", "raftkv/raft/../main.py", "raftkv/raft/nothing.py"):
        with pytest.raises(LookupError):
            source_excerpt(bad, 1)


def test_narration_says_why_a_vote_is_refused():
    from raftkv.learn.narrate import narrate
    from raftkv.raft import effects as fx
    from raftkv.raft import events as ev
    from raftkv.raft.messages import RequestVote, RequestVoteResponse
    log = fx.Log("WARN", "raft", "rejecting vote request since our last term is greater",
                 (("candidate", "n1:7000"), ("last-term", 3), ("last-candidate-term", 2)))
    event = ev.Receive("n1", RequestVote(4, "n1", "n1:7000", 7, 2))
    sentences = narrate("n3", event, [log, fx.Send("n1", "n1:7000", RequestVoteResponse(4, False))],
                        {"role": "Follower"}, {"role": "Follower"})
    assert sentences[0]["text"] == "n3 refuses: its log is more up to date (last term 3 > 2)."
    assert sentences[0]["paper"] == "§5.4.1" and sentences[0]["source"].startswith("raftkv/raft/election.py:")


def test_rules_name_existing_files_only():
    for rule in RULES.values():
        assert (pathlib.Path(REPO) / rule.path).is_file()
