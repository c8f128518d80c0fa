"""What pip installs: every module the node imports, and the console script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
INIT_OK = b'{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":1,"msg_id":0}}\n'


def test_every_module_of_the_node_is_packaged() -> None:
    """pyproject's py-modules lists exactly the project's top-level modules (a missing one breaks the script)."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"])
    assert listed == {path.stem for path in ROOT.glob("*.py")}


def test_console_script_answers_init_exactly() -> None:
    """The installed `collapsed-forwarding` is the node: the contract's exact init line, then exit 0."""
    script = shutil.which("collapsed-forwarding")
    if script is None:
        pytest.skip("the project is not installed (pip install -e '.[test]')")
    done = subprocess.run([script], input=INIT, capture_output=True, timeout=30, check=False)
    assert (done.stdout, done.returncode) == (INIT_OK, 0), done.stderr.decode()
