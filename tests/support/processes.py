"""Stopping a server a test started in its own session, whatever state it is in."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_tree(proc: subprocess.Popen, first_signal: int, grace: float) -> None:
    """`first_signal` to the process group, SIGKILL after `grace` seconds, then SIGKILL the group and
    any descendant that left it (children still running after the parent exited)."""
    try:
        import psutil

        family = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        family = []
    for sig, wait in ((first_signal, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in family:
        try:
            child.kill()
        except Exception:
            pass
