"""ipywidgets views over the core API: they render and edit what it returns."""
