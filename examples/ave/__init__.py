"""AVE example pipeline: audio + video ResNet-18 (see docs/examples/ave.md)."""
