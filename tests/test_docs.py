"""Every ```python and ```bash block of README.md and docs/*.md runs as written.

The blocks of one page run in order, in one temporary folder (a page's later blocks use what its earlier ones
made), Python blocks in one namespace, bash blocks with `bash -euo pipefail` and the installed `longformer` command
first on PATH. A block that needs the network says so on its first line (`# needs network: why`) and is skipped with
that reason. Runs in the `cross` env, where torch, JAX/Flax and TensorFlow are installed; a page that needs another
extra (`NEEDS`) runs in that extra's env and is skipped, with the env named, elsewhere."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import sys
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```\n", re.S | re.M)
NETWORK = re.compile(r"^#\s*needs network:\s*(.+)$")
NEEDS = {"onnx.md": ("onnxruntime", "the tox pt env")}  # page -> (module it needs, where it runs)


def blocks():
    for page in PAGES:
        for i, match in enumerate(FENCE.finditer(page.read_text())):
            name = f"{page.relative_to(ROOT)}#{i + 1}-{match.group(1)}"
            yield pytest.param(page, match.group(1), match.group(2), id=name)


_PAGES: dict[pathlib.Path, dict] = {}


@pytest.fixture
def page_state(tmp_path_factory):
    """Per page: its own working folder and Python namespace, shared by its blocks in order."""
    def get(page):
        if page not in _PAGES:
            _PAGES[page] = {"folder": tmp_path_factory.mktemp(page.stem), "namespace": {"__name__": "__docs__"}}
        return _PAGES[page]
    return get


@pytest.mark.parametrize("page, language, code", list(blocks()))
def test_block_runs_as_written(page, language, code, page_state):
    first = code.splitlines()[0] if code.strip() else ""
    if NETWORK.match(first):
        pytest.skip(f"{page.name}: needs network: {NETWORK.match(first).group(1)}")
    if page.name in NEEDS:
        module, where = NEEDS[page.name]
        pytest.importorskip(module, reason=f"{page.name} needs {module}; it runs in {where}")
    state = page_state(page)
    if language == "bash":
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                   LONGFORMER_REPO=str(ROOT))
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=state["folder"], capture_output=True,
                                text=True, timeout=300, env=env)
        assert result.returncode == 0, f"{page.name} block failed:\n{code}\n--- stdout\n{result.stdout}\n" \
                                       f"--- stderr\n{result.stderr}"
        return
    with contextlib.chdir(state["folder"]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the docs show what users see; their warnings are not under test here
        exec(compile(code, f"{page.name} block", "exec"), state["namespace"])
