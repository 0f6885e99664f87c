"""Run per-piece work in a forked child process, so that a parser that crashes the
interpreter (segfault, abort) or never returns costs one piece, not the whole run.

One child serves many pieces in turn (no fork per piece): the parent sends a request
through a pipe and waits at most ``timeout_sec`` for the answer. If the child dies, the
piece is reported as ``crash`` (with the signal or exit code); if it does not answer in
time, it is killed and the piece is reported as ``timeout``. Either way a new child is
forked for the next piece. ``os.fork`` is used directly because ``datasets.map`` workers
are daemonic processes, which ``multiprocessing`` forbids to have children.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing import Pipe
from typing import Any


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; a no-op elsewhere), so workers never outlive a killed run."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), sig)


class IsolatedRunner:
    """Call ``fn`` in a long-lived forked child with a per-call time limit.

    Args:
        fn: the function to run; inherited by the child through fork (no pickling),
            its arguments and result travel through a pipe (pickled).
        timeout_sec: longest wait for one call, in seconds (> 0).

    Calling the runner returns ``("ok", result)``, ``("timeout", message)`` or
    ``("crash", message)``; it never raises for what happens inside the child.
    """

    def __init__(self, fn: Callable[..., Any], timeout_sec: float) -> None:
        if timeout_sec <= 0:
            raise ValueError(f"timeout_sec must be positive, got {timeout_sec}.")
        self.fn, self.timeout_sec = fn, timeout_sec
        self._pid: int | None = None
        self._conn = None

    def _start(self) -> None:
        parent_conn, child_conn = Pipe()
        pid = os.fork()
        if pid == 0:  # child: serve requests until the parent goes away
            parent_conn.close()
            die_with_parent()
            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # no thread pools after a fork
            faulthandler.disable()  # a crash is reported by the parent, not as a traceback dump
            gc.freeze()  # inherited objects: keep the collector off them (no copy-on-write churn)
            code = 0
            try:
                _serve(self.fn, child_conn)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_conn.close()
        self._pid, self._conn = pid, parent_conn

    def _stop(self, kill: bool) -> int | None:
        """Stop the child; returns its wait status code (see _describe)."""
        if self._pid is None:
            return None
        if kill:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(self._pid, 0)
        self._conn.close()
        self._pid = self._conn = None
        return status

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        if self._pid is None:
            self._start()
        try:
            self._conn.send((args, kwargs))
            ready = self._conn.poll(self.timeout_sec)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            return "crash", _describe(self._stop(kill=True))
        if not ready:
            self._stop(kill=True)
            return "timeout", f"no result after {self.timeout_sec:g} s; the worker was killed"
        try:
            kind, value = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):  # the child died mid-call
            return "crash", _describe(self._stop(kill=False))
        if kind == "error":
            return "crash", value
        return "ok", value

    def close(self) -> None:
        """Stop the child process (a new one starts on the next call)."""
        if self._pid is not None:
            self._conn.close()  # EOF: the child leaves its loop
            self._stop(kill=True)


def _serve(fn: Callable[..., Any], conn: Any) -> None:
    while True:
        try:
            args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", fn(*args, **kwargs)))
        except Exception as err:  # a Python error inside fn: report it, keep serving
            conn.send(("error", f"{type(err).__name__}: {err}"))


def _describe(status: int | None) -> str:
    if status is None:
        return "the worker process could not be reached"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"the worker process was killed by signal {signal.Signals(sig).name}"
    return f"the worker process exited with code {os.WEXITSTATUS(status)}"
