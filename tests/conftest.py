import contextlib
import http.server
import io
import os
import threading
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import ember


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the long real-data training tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    ember.set_random_seed(0)


@pytest.fixture
def ember_data() -> Path:
    """The real datasets folder ($EMBER_DATA); tests that need it skip without it."""
    value = os.environ.get("EMBER_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("needs the real datasets: set EMBER_DATA (CI uses ../shared/data)")
    return Path(value)


def run_cli(*args, cwd=None):
    """`ember ARGS` in this process, output captured: what a subprocess shows (exit code, stdout, stderr)
    without a fresh interpreter importing torch each time (2-3 s a call)."""
    from ember import cli
    out, err = io.StringIO(), io.StringIO()
    folder = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    with folder, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=atol, rtol=rtol)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No EMBER_DATA, an empty HOME (so an empty cache)."""
    monkeypatch.delenv("EMBER_DATA", raising=False)
    monkeypatch.delenv("EMBER_OFFLINE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; counts requests."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()
    httpd.server_close()
