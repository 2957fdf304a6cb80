"""A node's image caches built ahead of its trials: a sweep's driver decodes the train and val images once,
while Ray starts, and the trials only map them (:mod:`hpo_cls.data.shared_cache`). Torch-free at import."""

from __future__ import annotations

from pathlib import Path

from hpo_cls.data.folders import class_mapping, list_images
from hpo_cls.data.shared_cache import has_entry, image_cache_dir
from hpo_cls.data.sizes import cache_size, image_bytes
from hpo_cls.spec import DataConfig, TrialConfig

__all__ = ["prepare_shared_cache"]


def prepare_shared_cache(data_cfg: DataConfig, cfg: TrialConfig, cache_limit_bytes: int = 4 * 2**30) -> None:
    """Build this node's train and val caches for ``cfg``'s preprocessing now (a sweep's driver, while Ray
    starts), so its trials only map them; the same limit as the trials' loaders. Where the folder cannot
    hold them, the trials fall back to their own copies (they warn). Imports torch only to decode."""
    root = Path(data_cfg.root)
    class_to_idx = class_mapping(root / "train")
    resize_to = cache_size(cfg, data_cfg.image_size)
    budget = cache_limit_bytes
    for split in ("train", "val"):
        samples = list_images(root / split, class_to_idx)
        budget -= len(samples) * image_bytes(resize_to)
        if budget < 0:
            return
        if has_entry([p for p, _ in samples], resize_to, image_cache_dir(data_cfg.cache_dir)):
            continue
        from hpo_cls.data.loaders import open_node_cache  # torch: only when there is something to decode

        try:
            open_node_cache(samples, resize_to, data_cfg.cache_dir)
        except OSError:
            return
