"""A trial's validation predictions file: written compactly and read back as written."""

import numpy as np
import pytest

from hpo_cls.train.val_predictions import PREDICTIONS_FILE, load_val_predictions, names_hash, save_val_predictions


def test_round_trip_in_float16_with_names_hash_and_class_order(tmp_path):
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    path = save_val_predictions(tmp_path, probabilities, ["cat/1.png", "dog/2.png"], [0, 2], ["cat", "ant", "dog"], 3)
    assert path == tmp_path / PREDICTIONS_FILE
    read = load_val_predictions(path)
    assert read.probabilities.dtype == np.float16
    np.testing.assert_allclose(read.probabilities, probabilities, atol=1e-3)
    assert read.names == ["cat/1.png", "dog/2.png"] and list(read.labels) == [0, 2]
    assert read.classes == ["cat", "ant", "dog"] and read.epoch == 3
    assert read.names_sha256 == names_hash(["cat/1.png", "dog/2.png"]) != names_hash(["dog/2.png", "cat/1.png"])


def test_shapes_must_agree(tmp_path):
    with pytest.raises(ValueError, match="probabilities"):
        save_val_predictions(tmp_path, np.zeros((2, 3)), ["a"], [0], ["x", "y", "z"], 1)
