"""Shared pieces of the audio-visual pipelines (CREMA-D, AVE): decoding, features, cache,
ResNet-18 encoders, fixtures and the train.py glue."""
