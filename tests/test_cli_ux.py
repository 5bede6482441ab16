"""What a newcomer sees from the `longformer` command: --version, `python -m longformer`, each long step named
before it starts and timed after, progress bars only on a terminal, --quiet. Through the real command in a
subprocess; framework-free (the verification falls back to the NumPy reference)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from conftest import random_checkpoint

import longformer


def test_version_and_python_dash_m():
    for command in ([sys.executable, "-m", "longformer", "--version"],
                    [os.path.join(os.path.dirname(sys.executable), "longformer"), "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"longformer {longformer.__version__} (Python ")
    result = subprocess.run([sys.executable, "-m", "longformer", "inspect", "nowhere/nothing", "--local-files-only"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_steps_are_named_before_and_timed_after_without_bars_in_logs(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerForMaskedLM")
    result = subprocess.run([sys.executable, "-m", "longformer", "convert", str(folder), str(tmp_path / "out"),
                             "--to", "flax"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("verify: LongformerForMaskedLM"))
    steps = [i for i, line in enumerate(lines) if line.startswith("verify: the ") and line.endswith(" s")]
    assert len(steps) == 2 and header < steps[0], lines  # the work is announced before it runs
    assert lines[0].startswith("converting ") and lines[0].endswith(" s")
    assert "%|" not in result.stdout and "\r" not in result.stdout  # no progress bar in a log


def test_quiet_prints_only_the_results(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerForMaskedLM")
    result = subprocess.run([sys.executable, "-m", "longformer", "convert", str(folder), str(tmp_path / "out"),
                             "--to", "flax", "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "PASS" in result.stdout


def test_a_terminal_gets_a_progress_bar(tmp_path):
    folder, _, _ = random_checkpoint(tmp_path / "ckpt", "LongformerForMaskedLM")
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "longformer", "convert", str(folder), str(tmp_path / "out"),
                             "--to", "flax", "--no-verify"], stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0
    text = seen.decode()
    assert "writing flax:" in text and "%|" in text, text
    assert text.splitlines()[-1].startswith(f"converting {folder} to flax: ")
