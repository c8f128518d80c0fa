"""What pip installs: one package, and a console script that imports nothing else; what the sdist holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # starts node processes

ROOT = Path(__file__).resolve().parent.parent
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
INIT_OK = b'{"src":"n1","dest":"c0","body":{"type":"init_ok","in_reply_to":1,"msg_id":0}}\n'


def sources(tmp_path: Path) -> Path:
    """A copy of the checkout without what builds leave behind: pip builds in the tree it is given,
    and a stale build/lib (setuptools never empties it) would put deleted modules into the wheel."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                              ".*cache", ".venv", ".hypothesis", "out"))
    return copy


def test_the_wheel_holds_one_package_and_nothing_else_at_the_top(tmp_path: Path) -> None:
    """No generic top-level names (proxy, main, maelstrom...) in site-packages: only collapsed_forwarding."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                            str(sources(tmp_path))], capture_output=True, timeout=300, check=False, cwd=tmp_path)
    if built.returncode != 0 and b"No module named pip" in built.stderr:
        pytest.skip("pip is not available")
    assert built.returncode == 0, built.stderr.decode()
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"collapsed_forwarding"}
    package = ROOT / "collapsed_forwarding"
    modules = {path.relative_to(ROOT).as_posix() for path in package.rglob("*.py")}
    assert modules == {name for name in names if name.endswith(".py")}  # subpackages too
    assert "collapsed_forwarding/py.typed" in names  # PEP 561: a user's mypy reads the hints
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_sdist_holds_what_its_tests_need(tmp_path: Path) -> None:
    """An unpacked sdist can run the suite: the tests with their helpers, the checkout's entry points,
    the documents and examples the README names, and the LICENSE."""
    build = [sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path)]
    if subprocess.run([*build, "--version"], capture_output=True, check=False, cwd=tmp_path).returncode != 0:
        pytest.skip("the sdist is built with `build` (pip install -e '.[test]')")
    built = subprocess.run([*build, str(sources(tmp_path))], capture_output=True, timeout=300, check=False,
                           cwd=tmp_path)
    assert built.returncode == 0, built.stderr.decode()
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"LICENSE", "README.md", "pyproject.toml", "main.py", "proxy.py"}
    for folder in ("tests", "docs", "examples", "collapsed_forwarding"):
        files = (path.relative_to(ROOT) for path in (ROOT / folder).rglob("*") if path.is_file())
        needed |= {f.as_posix() for f in files if not any(part.startswith((".", "__pycache__")) for part in f.parts)}
    assert needed <= names, sorted(needed - names)
    assert not {name for name in names if "__pycache__" in name or name.endswith(".pyc")}


def test_console_script_answers_init_exactly_beside_a_foreign_proxy_module(tmp_path: Path) -> None:
    """The installed `collapsed-forwarding` is the node, even with another project's `proxy` and
    `maelstrom` modules importable: the contract's exact init line, then exit 0."""
    script = shutil.which("collapsed-forwarding")
    if script is None:
        pytest.skip("the project is not installed (pip install -e '.[test]')")
    for name in ("proxy", "maelstrom", "main", "origins", "timers", "cluster"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('a different project')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([script], input=INIT, capture_output=True, timeout=30, check=False, env=env, cwd=tmp_path)
    assert (done.stdout, done.returncode) == (INIT_OK, 0), done.stderr.decode()


def test_main_py_and_proxy_py_work_from_a_checkout_with_nothing_installed(tmp_path: Path) -> None:
    """`python3 main.py`, `./main.py` and `from proxy import CollapsedForwardingProxy`, from any directory."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for cmd in ([sys.executable, "-S", str(ROOT / "main.py")], [str(ROOT / "main.py")]):
        done = subprocess.run(cmd, input=INIT, capture_output=True, timeout=30, check=False, env=env, cwd=tmp_path)
        assert (done.stdout, done.returncode) == (INIT_OK, 0), done.stderr.decode()
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from proxy import CollapsedForwardingProxy; "
            "print(CollapsedForwardingProxy(lambda key: key * 2).get('ab'))")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, timeout=30, check=False,
                          env=env, cwd=tmp_path)
    assert done.stdout == b"abab\n", done.stderr.decode()


def test_main_py_help_lists_every_flag_and_exits_0(tmp_path: Path) -> None:
    """A help string is a %-format: a bare "%" in one (say "2%") made `--help` crash."""
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--help"], capture_output=True, timeout=30,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"--lease-drift" in done.stdout and b"2%)" in done.stdout
