"""Processes a test started, found and ended by process id: never by name across the machine."""

from __future__ import annotations

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


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process descended from it (recorded first), and wait until they are gone."""
    processes = process_tree(pid)
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)
