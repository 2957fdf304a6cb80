"""Image folders -> checked listings (:mod:`.folders`, torch-free) -> transforms (:mod:`.transforms`)
-> datasets and loaders (:mod:`.loaders`). The package itself exports the torch-free part only."""

from hpo_cls.data.folders import (
    IMAGE_EXTENSIONS,
    DatasetSummary,
    class_mapping,
    describe_dataset,
    image_name,
    list_images,
    list_test_images,
    scan_images,
    shown_name,
)
from hpo_cls.errors import DataError

__all__ = ["DataError", "IMAGE_EXTENSIONS", "DatasetSummary", "class_mapping", "describe_dataset", "image_name", "list_images",
           "list_test_images", "scan_images", "shown_name"]

