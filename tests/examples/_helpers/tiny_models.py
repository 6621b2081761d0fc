"""A tiny two-modality data set and model, for the tests of the shared training machinery."""

import torch
from torch import nn

from examples.common.data import TensorDictDataset
from examples.common.model import ConcatFusionHead, MultimodalModel


def tiny_split(n: int, seed: int, num_classes: int = 3) -> TensorDictDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    a = torch.randn(n, 4, generator=g) + y[:, None].float()
    b = torch.randn(n, 5, generator=g) - y[:, None].float()
    return TensorDictDataset({"a": a, "b": b, "label": y})


def tiny_model(num_out: int = 3) -> MultimodalModel:
    encoders = {
        "a": nn.Sequential(nn.Linear(4, 8), nn.ReLU()),
        "b": nn.Sequential(nn.Linear(5, 8), nn.ReLU()),
    }
    return MultimodalModel(encoders, ConcatFusionHead([8, 8], num_out), {"a": 8, "b": 8})
