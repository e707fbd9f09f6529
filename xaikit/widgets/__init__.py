"""Thin ipywidgets wiring over :mod:`xaikit.viz`: callbacks only redraw, they never compute."""
