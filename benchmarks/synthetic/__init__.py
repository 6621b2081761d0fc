"""Synthetic competition benchmark (paper section 4.1, Figure 1)."""
