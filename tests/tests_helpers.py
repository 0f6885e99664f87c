"""Paths shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POP909 = SHARED_DATA / "pop909"
BAD_MIDI = SHARED_DATA / "bad_midi"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module (scripts are not a package), to call its main()."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Answer = Callable[[http.server.BaseHTTPRequestHandler], "tuple[int, bytes, str] | None"]


@contextlib.contextmanager
def local_http_server(answer: Answer) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1, in a thread, standing in for a remote service; yields its URL.

    ``answer(handler)`` is called for every request (GET, POST, PUT, HEAD; the body has been
    read) and returns ``(status, body, content type)``, or None to never answer: that request
    then hangs until the server stops, as a server that accepts connections but is stuck.
    """
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            reply = answer(self)
            if reply is None:
                release.wait()
                return
            status, body, kind = reply
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _handle  # noqa: N815 - http.server's naming

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def wait_for(condition: Callable[[], bool], seconds: float, what: str, poll_sec: float = 0.05) -> None:
    """Wait until ``condition()`` holds (polling), or fail naming ``what`` after ``seconds``: tests
    wait on conditions, never on fixed sleeps."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(poll_sec)
