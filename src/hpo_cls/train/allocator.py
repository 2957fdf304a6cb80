"""Keep the memory a training step frees inside the process instead of handing it back to the kernel.

A training loop frees and allocates the same activations and gradients every step. glibc's malloc gives
free memory at the top of a heap back to the kernel once more than its trim threshold is free, and
serves large blocks with their own ``mmap``; both thresholds move on their own as blocks come and go.
Each time, the kernel maps and zero-fills the same pages again: on the development VM (2 cores, ResNet-18
at 32 px, one thread) 45-130k page faults and 0.08-0.34 s of system time per 2-s epoch, most of them
after each per-epoch checkpoint. Two settings remove them:

- :func:`retain_freed_memory` fixes both thresholds high; ``TrainingRun`` calls it, so ``hpo-cls train``,
  sweep trials and promote members all get it. The process keeps its peak (+2% RSS here), which the
  next step reaches anyway.
- :data:`TRIAL_PROCESS_ENV`: Tune runs a trial in a thread other than the main one, and glibc gives
  such a thread its own arena, made of 64 MB heaps that it unmaps whenever one empties, whatever the
  thresholds (40-120k faults per epoch were left in a Ray trial). With one arena per process every
  thread allocates from the main heap, where the trim threshold holds. glibc reads it at process start,
  so it goes into the trial processes' environment (``sweep.reuse.trial_process_environment``; on a local
  Ray its servers inherit it too, and their few allocations share one lock).

Both are process-wide, like ``torch.set_num_threads``, and do nothing outside glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["retain_freed_memory", "TRIAL_PROCESS_ENV"]

TRIAL_PROCESS_ENV = {"MALLOC_ARENA_MAX": "1"}
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # the ceiling glibc's own moving threshold stops at on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30


def retain_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when they were set."""
    if not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Setting either threshold also stops glibc from moving the other one.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):  # the name is unknown where the C library is not glibc
        return False
