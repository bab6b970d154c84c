"""loaders: PAN-X data, label alignment, padding and batching."""
