"""Processes a test started, found and ended by process id: never by name across the machine."""

from __future__ import annotations

import subprocess

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def trial_workers(pid: int) -> list[psutil.Process]:
    """Tune's trial processes among the descendants of ``pid`` (a sweep driver or a node this test started)."""
    workers = []
    for process in descendants(pid):
        try:
            if " ".join(process.cmdline()).startswith("ray::ImplicitFunc"):
                workers.append(process)
        except psutil.NoSuchProcess:
            pass
    return workers


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants (those that still exist)."""
    try:
        return [*descendants(pid), psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return descendants(pid)


def running(process: psutil.Process) -> bool:
    """Still running, and still the same process (not another that got its PID)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process this test started and every process descended from it (recorded first), and
    wait until they are gone. Nothing is sent once ``process`` has ended: its PID may belong to another
    process by then (the tree of a process that ended on its own was shut down by it)."""
    if process.poll() is None:
        tree = process_tree(process.pid)
        for member in tree:
            try:
                member.kill()  # psutil refuses a PID that now belongs to another process
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=30)
    process.wait()
