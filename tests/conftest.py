"""Shared pytest configuration: keep torch on few threads so tests behave on 2-core machines."""

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
