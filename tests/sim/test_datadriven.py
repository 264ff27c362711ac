"""The data-driven file format: parsing, rendering, comparing, rewriting."""

import pytest

from raftkv.sim import datadriven
from raftkv.sim.datadriven import Arg

TEXT = """\
# a comment before the first case
greet name=ada
----
hello ada

# empty output
quiet
----

shout words=(a, b,c) loud
----
----
A

B
----
----

# the end
"""


def test_parse_reads_commands_outputs_and_comments():
    cases, trailer = datadriven.parse(TEXT)
    assert [c.command for c in cases] == ["greet name=ada", "quiet", "shout words=(a, b,c) loud"]
    assert [c.line for c in cases] == [2, 7, 10]
    assert [c.expected for c in cases] == ["hello ada\n", "", "A\n\nB\n"]
    assert cases[0].preamble == ["# a comment before the first case"]
    assert cases[1].preamble == ["# empty output"]
    assert trailer == ["# the end"]
    assert cases[2].args == [Arg("words", ("a", "b", "c")), Arg("loud")]
    assert cases[0].args[0].value == "ada"


def test_render_gives_back_the_file():
    cases, trailer = datadriven.parse(TEXT)
    assert datadriven.render(cases, trailer) == TEXT


def test_render_fences_output_with_blank_lines():
    cases, trailer = datadriven.parse("a\n----\nx\n")
    text = datadriven.render(cases, trailer, ["one\n\ntwo\n"])
    assert text == "a\n----\n----\none\n\ntwo\n----\n----\n"
    assert datadriven.parse(text)[0][0].expected == "one\n\ntwo\n"


def test_a_command_without_separator_is_an_error():
    with pytest.raises(ValueError, match="line 1"):
        datadriven.parse("lonely\nnot a separator\n")


def test_run_file_compares_and_rewrites(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT.replace("hello ada", "hello bob"))
    answers = {"greet": "hello ada\n", "quiet": "", "shout": "A\n\nB\n"}
    with pytest.raises(datadriven.Mismatch) as failure:
        datadriven.run_file(path, lambda case: answers[case.name])
    assert str(failure.value).splitlines()[:5] == [
        f"{path}:2: output of 'greet name=ada' differs", "--- expected", "+++ actual", "@@ -1 +1 @@", "-hello bob"]
    datadriven.run_file(path, lambda case: answers[case.name], rewrite=True)
    assert path.read_text() == TEXT


def test_an_error_in_a_case_names_its_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)

    def handle(case):
        if case.name == "shout":
            raise RuntimeError("boom")
        return ""
    with pytest.raises(RuntimeError) as failure:
        datadriven.run_file(path, handle)
    assert failure.value.__notes__ == [f"at {path}:10: shout words=(a, b,c) loud"]
