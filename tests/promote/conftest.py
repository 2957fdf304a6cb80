"""The promote tests' images: small enough to train a member in seconds, distinct enough that it learns them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import make_tinted_images


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tinted_images(tmp_path_factory.mktemp("data"))
