"""A ``botstream worker`` child process that cannot outlive the process that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# Run in the child before the worker: ask the kernel for SIGKILL when the parent
# dies (PR_SET_PDEATHSIG, Linux), give up if the parent is already gone, then
# become the worker. On systems without prctl the worker still gets SIGTERM on
# a clean stop; only a SIGKILLed parent could leave it behind there.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


class WorkerProcess:
    """``python -m botstream worker ARGS`` in its own session, logging to a file.

    Its own session keeps a terminal's Ctrl-C away from it, so that whoever
    started it decides the order of shutdown (the demo: traffic, then worker,
    then broker). The child's ``BOTSTREAM_*`` settings are exactly ``env``:
    none leak in from this process's environment.
    """

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited."""
        return None if self.process is None else self.process.poll()

    def start(self) -> None:
        """Start the worker, logging to :attr:`log_path`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
        env.update(self.env, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), "-m", "botstream", *self.args],
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (a clean Faust shutdown), then SIGKILL whatever is left of its group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout_s)
        self.kill()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the worker's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
