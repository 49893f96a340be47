"""ipywidgets panels: one per file."""
