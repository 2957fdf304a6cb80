"""hpo_cls.train.allocator: a process that trains keeps the memory its steps free instead of the kernel
mapping and zero-filling the same pages again every step (page faults, system time)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
    reason="the thresholds are glibc's",
)

# A trial's epochs in a fresh process, in its main thread as `hpo-cls train` runs them: prints the page
# faults of each. "default" switches off what TrainingRun does about them.
_EPOCH_FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    import hpo_cls.train.run as run_module
    from hpo_cls.spec import DataConfig, TrialConfig

    torch.set_num_threads(1)
    if sys.argv[2] == "default":
        run_module.retain_freed_memory = lambda: False
    run = run_module.TrainingRun(DataConfig(root=sys.argv[1], image_size=32, workers=0),
                                 TrialConfig(backbone="resnet18", lr=0.05, batch_size=64, amp=False), 6)
    while run.epoch < run.epochs:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        run.run_epoch()
        print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
""")


@pytest.fixture
def images_32px(tmp_path):
    """Two 64-image classes of 32-px images: one epoch at batch 64 is two steps of ResNet-18 (~200 MB)."""
    from sweep_helpers import make_images

    return make_images(tmp_path / "data", classes=2, train=64, val=8, size=32)


def _epoch_faults(data_root, variant: str) -> list[int]:
    result = subprocess.run([sys.executable, "-c", _EPOCH_FAULTS, str(data_root), variant],
                            capture_output=True, text=True, check=True)
    return [int(line) for line in result.stdout.split()]


def test_a_training_process_reuses_freed_memory_instead_of_faulting_it_in_again(images_32px):
    # The first epoch maps the memory for the first time either way. After it, glibc's moving thresholds hand
    # freed blocks back to the kernel most epochs; with TrainingRun's fixed ones the heap only grows now
    # and then (a few thousand pages), and the median epoch faults none.
    default = _epoch_faults(images_32px, "default")
    assert sum(default[1:]) > 10_000, f"this glibc kept the memory anyway, the test would see no difference: {default}"
    retained = _epoch_faults(images_32px, "retain")
    assert statistics.median(retained[1:]) < 500, retained


@pytest.mark.ray
def test_a_sweeps_trial_process_trains_without_faulting_its_memory_in_again(images_32px):
    """Tune trains in a thread other than the main one; glibc gives such a thread an arena of 64 MB heaps it
    unmaps as they empty, whatever the thresholds. The trial processes of a sweep's Ray run with one arena, so
    a trial's thread allocates from the main heap and its epochs (ResNet-18, 32 px, batch 64) fault no pages
    in again. A worker of the same Ray with glibc's default arenas (the control) allocates elsewhere."""
    import ray

    from hpo_cls.sweep.cluster import connect_ray

    class TrialProcess:  # defined here: Ray ships it to the workers by value; each call runs in a new thread,
        # as Tune runs a trial
        def allocates_from_main_heap(self) -> bool:
            import ctypes

            def check() -> bool:
                libc = ctypes.CDLL(None)
                libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
                block = libc.malloc(64 * 1024)  # below any mmap threshold: from this thread's arena
                with open("/proc/self/maps") as maps:
                    heap = [line.split()[0].split("-") for line in maps if line.rstrip().endswith("[heap]")]
                libc.free(ctypes.c_void_p(block))
                return any(int(low, 16) <= block < int(high, 16) for low, high in heap)

            return self._in_new_thread(check)

        def epoch_faults(self, root: str, epochs: int) -> list[int]:
            import resource

            import torch

            from hpo_cls.spec import DataConfig, TrialConfig
            from hpo_cls.train.run import TrainingRun

            def train() -> list[int]:
                torch.set_num_threads(1)
                run = TrainingRun(DataConfig(root=root, image_size=32, workers=0),
                                  TrialConfig(backbone="resnet18", lr=0.05, batch_size=64, amp=False), epochs)
                faults = []
                while run.epoch < epochs:
                    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                    run.run_epoch()
                    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
                return faults

            return self._in_new_thread(train)

        @staticmethod
        def _in_new_thread(function):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                return pool.submit(function).result()

    assert connect_ray(None, object_store_bytes=80 * 2**20)
    try:
        trial = ray.remote(num_cpus=1)(TrialProcess)
        ours = trial.remote()
        default_arenas = trial.options(runtime_env={"env_vars": {"MALLOC_ARENA_MAX": "0"}}).remote()
        ours_in_main_heap, control_in_main_heap, faults = ray.get([
            ours.allocates_from_main_heap.remote(), default_arenas.allocates_from_main_heap.remote(),
            ours.epoch_faults.remote(str(images_32px), 6)])
    finally:
        ray.shutdown()
    assert not control_in_main_heap
    assert ours_in_main_heap
    # The first epoch maps the memory for the first time; later ones reuse it (the heap still grows now and
    # then, by a few thousand pages: the median epoch faults none).
    assert statistics.median(faults[1:]) < 1_000, faults


def test_retain_freed_memory_is_a_no_op_returning_false_without_glibc(monkeypatch):
    from hpo_cls.train import allocator

    monkeypatch.setattr(allocator.os, "confstr", lambda name: None)
    assert allocator.retain_freed_memory() is False
