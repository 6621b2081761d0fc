"""CMU-MOSEI and CMU-MOSI sentiment pipelines (vision, audio, text; regression or binary)."""
