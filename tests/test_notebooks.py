"""Every notebook: committed clean, thin, Colab-ready (the install cell first), and executing top to bottom in SMOKE
mode."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

# The first code cell of every notebook, byte for byte: it makes xaikit importable on Colab and in a clone.
INSTALL_CELL = '''\
# Setup: makes xaikit importable; does nothing where it already is (after `pip install -r requirements.txt`).
# In a clone it installs the clone (editable); on Colab it clones XAIKIT_REPO first: the sample data and models
# live in the repository beside the package. Colab's own torch is kept (xaikit's requirements are lower bounds).
XAIKIT_REPO = "https://github.com/xaikit/xaikit"  # the repository these notebooks come from: change it for a fork
import importlib, importlib.util, subprocess, sys
from pathlib import Path
IN_COLAB = "google.colab" in sys.modules
if importlib.util.find_spec("xaikit") is None:
    KIT_ROOT = Path.cwd().parent  # this notebook sits in the notebooks/ folder of a clone
    if IN_COLAB and not (KIT_ROOT / "pyproject.toml").is_file():
        KIT_ROOT = Path.cwd() / "xaikit-src"  # Colab opened the notebook on its own
        if not KIT_ROOT.is_dir():
            subprocess.run(["git", "clone", "--depth", "1", XAIKIT_REPO, str(KIT_ROOT)], check=True)
    if not ((KIT_ROOT / "pyproject.toml").is_file() and (KIT_ROOT / "xaikit").is_dir()):
        raise ModuleNotFoundError(
            f"xaikit is not installed in this kernel and {KIT_ROOT} is not a clone of it: clone {XAIKIT_REPO}, "
            "run `pip install -r requirements.txt` in its root, then open this notebook from its notebooks/ folder"
        )
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(KIT_ROOT)], check=True)
    sys.path.insert(0, str(KIT_ROOT))  # an editable install is seen by new kernels; this one needs the path now
    importlib.invalidate_caches()
if IN_COLAB:
    from google.colab import output
    output.enable_custom_widget_manager()  # Colab shows Plotly FigureWidgets and anywidget views only with it'''


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(_code_cells(nb)) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_thin_and_parametrized(path):
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one code cell tagged 'parameters'"
    assert "SMOKE" in tagged[0].source, f"{path.name}: the parameters cell must define SMOKE"
    for i, cell in enumerate(cells):
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{path.name}, code cell {i}: defines a function or class; move it into xaikit/"
            )
    assert nb.cells[0].cell_type == "markdown", (
        f"{path.name}: should open with a markdown cell saying what you will learn")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executes_in_smoke_mode(path, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    # papermill's convention: an injected cell after the parameters cell overrides them
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(f"SMOKE = True\nOUT_DIR = {str(tmp_path)!r}"))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        failing = next(
            (i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            None,
        )
        pytest.fail(f"{path.name}: cell {failing} failed:\n{str(err)[-3000:]}")
    _assert_figures_render_statically(nb, path.name)


def _assert_figures_render_statically(nb, name: str) -> None:
    """Every Plotly figure the executed notebook shows also carries a PNG, and nbconvert's HTML shows it."""
    from nbconvert import HTMLExporter

    from xaikit.viz.export import png_export_available

    outputs = [o for c in _code_cells(nb) for o in c.get("outputs", []) if "data" in o]
    plotly = [o for o in outputs if "application/vnd.plotly.v1+json" in o["data"]]
    if not png_export_available():
        assert not any("image/png" in o["data"] for o in plotly)
        pytest.skip("no Chrome/Chromium for Kaleido: figures are interactive only (see .ci/browser-deps)")
    without = sum("image/png" not in o["data"] for o in plotly)
    assert without == 0, f"{name}: {without} of {len(plotly)} Plotly figures were stored without a static PNG"
    body, _ = HTMLExporter().from_notebook_node(nb)
    images = body.count('src="data:image/png;base64,')
    pngs = sum("image/png" in o["data"] for o in outputs)
    assert images == pngs >= len(plotly), f"{name}: the HTML shows {images} images for {pngs} PNG outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_installs_the_kit(path):
    nb = nbformat.read(path, as_version=4)
    first = _code_cells(nb)[0].source
    assert first == INSTALL_CELL, (
        f"{path.name}: the first code cell must be the install cell of tests/test_notebooks.py (INSTALL_CELL), "
        "byte for byte, so that the notebook runs on Colab and from a clone"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_opens_and_closes_with_the_reading_guide(path):
    nb = nbformat.read(path, as_version=4)
    assert "what you will learn" in nb.cells[0].source.lower(), (
        f"{path.name}: the first cell should say what you will learn")
    assert "full run on a 2-core cpu" in nb.cells[0].source.lower(), (
        f"{path.name}: state the measured run time at the top")
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "what to try next" in last.source.lower(), (
        f"{path.name}: should end with a markdown cell 'What to try next'"
    )


@pytest.fixture
def install_cell_env(monkeypatch):
    """Runs INSTALL_CELL as if xaikit were not importable; records the commands instead of running them."""
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:  # what the clone brings: a repository root with the package
            (Path(cmd[-1]) / "xaikit").mkdir(parents=True)
            (Path(cmd[-1]) / "pyproject.toml").write_text("")

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return calls


def _pip_editable(root: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "-q", "-e", str(root)]


def test_install_cell_installs_the_clone_it_runs_in(install_cell_env, tmp_path, monkeypatch):
    (tmp_path / "xaikit").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    exec(INSTALL_CELL, {})
    assert install_cell_env == [_pip_editable(tmp_path)]
    assert sys.path[0] == str(tmp_path)


def test_install_cell_on_colab_clones_the_repository(install_cell_env, tmp_path, monkeypatch):
    enabled = []
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: enabled.append(True))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    (tmp_path / "content").mkdir()
    monkeypatch.chdir(tmp_path / "content")
    namespace = {}
    exec(INSTALL_CELL, namespace)
    root = tmp_path / "content" / "xaikit-src"
    assert install_cell_env == [["git", "clone", "--depth", "1", namespace["XAIKIT_REPO"], str(root)],
                                _pip_editable(root)]
    assert enabled == [True]


def test_install_cell_elsewhere_says_what_to_run(install_cell_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -r requirements\.txt"):
        exec(INSTALL_CELL, {})
    assert install_cell_env == []


def test_install_cell_does_nothing_where_the_kit_is_importable(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail(f"ran {args}"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(INSTALL_CELL, {})
