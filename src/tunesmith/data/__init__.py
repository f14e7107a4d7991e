"""Data layer: file formats and record kinds (formats.py, loading.py), chat templates and label masks."""
