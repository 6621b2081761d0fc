"""The tiny two-modality data of the trainer and method tests."""

import pytest

from tests.examples._helpers.tiny_models import tiny_split


@pytest.fixture
def tiny_data():
    return {"train": tiny_split(48, 0), "val": tiny_split(24, 1), "test": tiny_split(24, 2)}
