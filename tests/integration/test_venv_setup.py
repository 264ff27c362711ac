"""scripts/_venv.sh on a fresh clone, as the README's walkthrough meets it:
three start scripts backgrounded at the same moment all need the venv, and
two pips building one venv side by side break each other.

SLOW: this is the one test that builds a venv with pip (about 40 s, or less
from a local wheel cache). It builds it under RAFTKV_VENV, a fresh directory
of its own; the repository's .venv is not touched."""

from __future__ import annotations

import os
import subprocess

import pytest

from cluster import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# What each of the three runs: the start scripts' first step, then a check
# that this shell does not keep the lock's file open (a node exec'd from it
# would hold the lock for its whole life) and that python is the venv's.
SCRIPT = 'source scripts/_venv.sh && [ ! -e /proc/$$/fd/9 ] && python -c "import raftkv, sys; print(sys.prefix)"'


def test_three_scripts_at_once_build_the_venv_once_and_all_use_it(tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["RAFTKV_VENV"] = str(venv)
    procs = [subprocess.Popen(["bash", "-c", SCRIPT], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        results = [(p.wait(600), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert out.strip() == str(venv), out
        assert "Traceback" not in err
    said = "".join(err for _, _, err in results)
    assert said.count(f"setting up {venv} (about 40 s, once) ...") == 1, said[-3000:]
    assert said.count(f"waiting for another script to finish setting up {venv} ...") <= 2
    assert (venv / ".installed").exists() and (tmp_path / "venv.lock").exists()

    # once set up, a script says nothing about it
    again = subprocess.run(["bash", "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert (again.returncode, again.stdout.strip(), again.stderr) == (0, str(venv), "")
