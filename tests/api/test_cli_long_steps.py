"""Long steps of the CLI are never silent: `raftkv sim --runs N` shows its
progress (a bar on a terminal, a line every few seconds otherwise), and
`raftkv sim --list` says what each scenario shows."""

from __future__ import annotations

import io

from raftkv.sim import cli as sim_cli
from raftkv.sim import fuzz
from raftkv.sim.scenarios import TESTDATA, scenario_names


def test_runs_off_a_terminal_print_a_progress_line_now_and_then(monkeypatch, capsys):
    monkeypatch.setattr(sim_cli, "PROGRESS_EVERY_S", 0.0)  # every run, instead of every 5 s
    run_once = fuzz.run_once
    assert sim_cli.main(["--runs", "3", "--chaos-ms", "300"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["sim: 1/3 runs", "sim: 2/3 runs", "sim: 3/3 runs"], err
    assert "s left" in lines[0] and "\r" not in err
    assert out.startswith("sim: 3 runs, 0 violations") and out.count("\n") == 1, out
    assert fuzz.run_once is run_once


def test_runs_off_a_terminal_stay_quiet_below_the_interval(capsys):
    assert sim_cli.main(["--runs", "2", "--chaos-ms", "300"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("sim: 2 runs, 0 violations")


def test_progress_on_a_terminal_is_one_bar_redrawn_in_place():
    now = [0.0]
    stream = io.StringIO()
    progress = sim_cli.Progress(320, stream=stream, tty=True, clock=lambda: now[0])
    for _ in range(160):
        now[0] += 1 / 32  # exact in binary: the redraws fall on known runs
        progress.step()
    text = stream.getvalue()
    assert "\n" not in text and text.startswith("\r[")
    last = text.rsplit("\r", 1)[1]
    assert last == "[" + "#" * 15 + "-" * 15 + "] 160/320 runs, 5 s, about 5 s left\x1b[K", last
    # redrawn at most ten times a second, not once per run
    assert text.count("\r") == 40
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")  # the summary goes where the bar was


def test_list_says_what_each_scenario_shows(capsys):
    assert sim_cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    entries = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            name, _, text = line.partition(" ")
            entries[name] = text.strip()
        else:
            entries[name] += " " + line.strip()
    assert list(entries) == scenario_names()
    for name, text in entries.items():
        first = (TESTDATA / f"{name}.txt").read_text().splitlines()[0].lstrip("# ")
        assert text.endswith(".") and first.startswith(text[:40]), (name, text)
    assert entries["figure-8"].startswith("Raft paper Fig. 8: an entry from an earlier term")
    assert entries["leadership-transfer"] == "The leader hands leadership to a follower with TimeoutNow."
