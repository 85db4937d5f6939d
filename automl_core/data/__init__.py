"""Data ingest: find images (scan), decode them once (cache), split train/validation."""
