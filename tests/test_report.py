"""The static HTML report: files written, tables complete, names unique, no identifiers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from xaikit.errors import ArgumentError
from xaikit.report import Report


def test_report_writes_page_tables_and_images(tmp_path):
    rep = Report(tmp_path / "r", title="t")
    rep.section("Data", "some <text>")
    df = pd.DataFrame({"x": np.arange(100), "y": np.linspace(0, 1, 100)})
    rep.table(df, "numbers", caption="n", max_rows=5)
    rep.image(np.linspace(0, 1, 64).reshape(8, 8), "ramp")
    rep.figure(go.Figure(go.Scatter(y=[1, 2, 3])), "line")
    index = rep.write()
    page = index.read_text()
    assert "some &lt;text&gt;" in page  # text is escaped
    assert "Showing 5 of 100 rows" in page
    assert "js-plotly-plot" in page or "plotly-graph-div" in page
    back = pd.read_csv(tmp_path / "r" / "numbers.csv")
    pd.testing.assert_frame_equal(back, df)  # all rows, full precision
    assert (tmp_path / "r" / "ramp.png").stat().st_size > 0
    assert (tmp_path / "r" / "plotly-cartesian.min.js").stat().st_size > 1e6  # the bundle that draws a scatter


def test_duplicate_names_are_refused(tmp_path):
    rep = Report(tmp_path)
    rep.table(pd.DataFrame({"a": [1]}), "t")
    with pytest.raises(ArgumentError, match="used twice"):
        rep.table(pd.DataFrame({"a": [1]}), "t")
