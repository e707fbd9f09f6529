"""Pure Plotly figure builders: every function returns a ``plotly.graph_objects.Figure`` and computes nothing heavy."""
