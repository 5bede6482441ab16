"""Hub ids are offline-first: a cached repository loads with no network at all; an uncached one costs one listing
request (no retries), and with no network any command fails within seconds, saying why and how to work offline.
The Hub here is a local HTTP server the test runs (or a closed port, or one that never answers): nothing leaves
this machine. Framework-free."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import make_cache, random_checkpoint

REPO = "someorg/tiny-longformer"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(http.server.ThreadingHTTPServer):
    """Serves one repository as the Hub's API and `resolve` endpoints do; counts the requests it gets."""

    def __init__(self, folder):
        self.files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, head: bool):
        hub = self.server
        hub.requests.append(f"{self.command} {self.path}")
        if self.path.startswith(f"/api/models/{REPO}/revision/"):
            body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": n} for n in hub.files]}).encode()
            headers = {"Content-Type": "application/json"}
        elif self.path.startswith(f"/{REPO}/resolve/") and self.path.rsplit("/", 1)[-1] in hub.files:
            body = hub.files[self.path.rsplit("/", 1)[-1]]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self):
        self._reply(head=False)

    def do_HEAD(self):
        self._reply(head=True)


@pytest.fixture
def repo(tmp_path, tokenizer_dir):
    folder, _, _ = random_checkpoint(tmp_path / "repo", "LongformerForMaskedLM")
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, folder)
    return folder


@pytest.fixture
def hub(repo):
    server = FakeHub(repo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends: connections are refused


@pytest.fixture
def silent_endpoint():
    """A server that accepts connections and never answers (a network that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def env_for(tmp_path, endpoint, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home"),
                "HF_HUB_CACHE": str(tmp_path / "hub-cache"), **extra})
    return env


def run(env, *args):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "longformer.cli", *args], capture_output=True, text=True,
                            timeout=120, env=env)
    return result, time.monotonic() - start


TOKENIZER = "import sys; from longformer import AutoTokenizer; AutoTokenizer.from_pretrained(sys.argv[1])"


@pytest.mark.parametrize("network", ["refused", "silent", "no-dns"])
def test_no_network_fails_fast_and_says_how_to_work_offline(tmp_path, silent_endpoint, network):
    endpoint = {"refused": f"http://127.0.0.1:{closed_port()}", "silent": silent_endpoint,
                "no-dns": "https://hub.invalid"}[network]
    env = env_for(tmp_path, endpoint, HF_HUB_ETAG_TIMEOUT="1")  # the silent network: each wait is this long
    for command in (["inspect", REPO], ["convert", REPO, str(tmp_path / "out")], ["parity", REPO]):
        result, seconds = run(env, *command)
        assert seconds < 20 and result.returncode == 2, (seconds, result.stderr)
        message = result.stderr.strip()
        assert message.startswith("error: Could not reach the Hugging Face Hub") and "Traceback" not in message
        assert str(tmp_path / "hub-cache") in message and "HF_HUB_OFFLINE=1" in message and "local folder" in message
        assert " has no config.json of it" in message or " has no model.safetensors or " in message  # looked for
        assert "Retrying" not in result.stderr
    start = time.monotonic()
    tok = subprocess.run([sys.executable, "-c", TOKENIZER, REPO], capture_output=True, text=True, timeout=120, env=env)
    assert time.monotonic() - start < 20 and "HubUnreachableError: Could not reach the Hugging Face Hub" in tok.stderr


def test_uncached_repo_costs_one_listing_then_loads_from_the_cache(tmp_path, hub):
    env = env_for(tmp_path, hub.url)
    result, _ = run(env, "inspect", REPO)
    assert result.returncode == 0, result.stderr
    assert "LongformerForMaskedLM" in result.stdout and "problems: none" in result.stdout
    listings = [r for r in hub.requests if r.startswith("GET /api/models/")]
    assert len(listings) == 1, hub.requests
    assert not [r for r in hub.requests if "pytorch_model" in r or "tf_model" in r or "flax_model" in r]
    hub.requests.clear()
    result, _ = run(env, "inspect", REPO)
    assert result.returncode == 0 and [r for r in hub.requests if REPO in r] == []  # cached: no network at all
    tok = subprocess.run([sys.executable, "-c", TOKENIZER, REPO], capture_output=True, text=True, timeout=120, env=env)
    assert tok.returncode == 0, tok.stderr
    # The listing showed tokenizer_config.json and tokenizer.json absent; the cache records it (huggingface_hub's
    # .no_exist markers), so with the network gone (a Hub that never answers) nothing waits.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        offline = dict(env, HF_ENDPOINT=f"http://127.0.0.1:{silent.getsockname()[1]}", HF_HUB_ETAG_TIMEOUT="30")
        start = time.monotonic()
        tok = subprocess.run([sys.executable, "-c", TOKENIZER, REPO], capture_output=True, text=True, timeout=120,
                             env=offline)
        assert tok.returncode == 0 and time.monotonic() - start < 20, tok.stderr


def test_cached_repo_needs_no_network(tmp_path, repo, silent_endpoint):
    # The optional tokenizer files the repository lacks are recorded absent, as a download leaves them.
    cache = make_cache(tmp_path, repo, absent=("tokenizer_config.json", "tokenizer.json"))
    env = env_for(tmp_path, silent_endpoint, HF_HUB_CACHE=str(cache), HF_HUB_ETAG_TIMEOUT="30")
    result, seconds = run(env, "inspect", REPO)
    assert result.returncode == 0 and seconds < 20, result.stderr
    code = (f"from longformer import AutoTokenizer, AutoConfig; t = AutoTokenizer.from_pretrained('{REPO}'); "
            f"print(t('hello')['input_ids'][0], AutoConfig.from_pretrained('{REPO}').vocab_size)")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["0", "99"] and time.monotonic() - start < 20, out.stderr


def test_unknown_repo_on_a_reachable_hub(tmp_path, hub):
    result, _ = run(env_for(tmp_path, hub.url), "inspect", "someorg/missing")
    assert result.returncode == 2 and "No Hub repository someorg/missing" in result.stderr
