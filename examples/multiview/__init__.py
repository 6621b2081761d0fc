"""UCI Multiple Features: a real multi-view benchmark with two to six modalities."""
