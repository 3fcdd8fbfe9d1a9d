"""instrunet analyzer plugin: instrument condition (healthy / moderately aged / broken-noisy)."""
