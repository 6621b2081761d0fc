"""UCF-51 example pipeline: audio + video ResNet-18 (see docs/examples/ucf.md)."""
