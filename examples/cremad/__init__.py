"""CREMA-D example pipeline: audio + video ResNet-18 (see docs/examples/cremad.md)."""
