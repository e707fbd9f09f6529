"""Helpers for the browser tests: a headless JupyterLab server, a headless system Chromium, notebook driving.

The browser is Debian's ``chromium`` driven by Playwright's Python package through ``executable_path``
(never ``playwright install``: the CI machine downloads nothing). ``.ci/browser-deps`` installs both.
Playwright drives the page like a user (menus, keyboard); the page's own state (the notebook model, the
Plotly graph divs) is read with ``page.evaluate`` to decide when work is done and what changed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nbformat

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("XAIKIT_CHROMIUM", "/usr/bin/chromium"))
ENABLE_HINT = "run `.ci/browser-deps` (installs Debian's chromium and the playwright Python package) to enable it"

# Without these, headless Chromium on a closed network waits on update/sync/QUIC probes and can hang.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Lab settings for an unattended run: no news/update toasts covering the page.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
    },
}


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here (None when Chromium and Playwright are both present)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM} (set XAIKIT_CHROMIUM); {ENABLE_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the playwright Python package is not installed; {ENABLE_HINT}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, token and log file."""

    base_url: str
    token: str
    log: Path

    def url(self, path: str) -> str:
        """URL of ``path`` (e.g. ``lab/tree/x.ipynb``) with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> bytes:
        req = urllib.request.Request(f"{self.base_url}api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"


def _write_lab_settings(settings_dir: Path) -> None:
    for rel, values in _LAB_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_up(server: LabServer, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} while starting:\n{server.log_tail()}")
        try:
            json.loads(server.api("status", timeout=2.0))
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer /api/status within {timeout:.0f} s:\n{server.log_tail()}")


def _stop(server: LabServer | None, proc: subprocess.Popen) -> None:
    """Shut the server down cleanly (it stops its kernels), then terminate, then kill its process group."""
    if proc.poll() is None and server is not None:
        try:
            server.api("shutdown", method="POST")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            print(f"JupyterLab /api/shutdown failed ({err}); terminating it", file=sys.stderr)
    for sig, wait in ((None, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if sig is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)  # the group this helper started (start_new_session=True)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def jupyter_lab(root_dir: Path, log: Path, startup_timeout: float = 90.0) -> Iterator[LabServer]:
    """Start JupyterLab headless on 127.0.0.1 (free port, token, private runtime/config dirs); always stop it."""
    token = secrets.token_hex(16)
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="xaikit-lab-"))
    settings = tmp / "user-settings"
    _write_lab_settings(settings)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_PLATFORM_DIRS="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.expose_app_in_browser=True",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    server: LabServer | None = None
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            server = LabServer(f"http://127.0.0.1:{port}/", token, log)
            _wait_until_up(server, proc, startup_timeout)
            yield server
        finally:
            _stop(server, proc)
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def chromium(playwright, viewport=(1400, 1000)) -> Iterator[object]:
    """A headless system-Chromium browser context with a fresh user-data-dir; closed and removed afterwards."""
    profile = tempfile.mkdtemp(prefix="xaikit-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": viewport[0], "height": viewport[1]}, timeout=60_000,
    )
    try:
        yield context
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- notebooks


def smoke_copy(src: Path, dst: Path, out_dir: Path) -> Path:
    """Copy notebook ``src`` to ``dst`` with ``SMOKE = True`` (and ``OUT_DIR``) injected after its parameters cell.

    papermill's convention, as in ``tests/test_notebooks.py``. The kernelspec is set to ``python3`` so
    JupyterLab starts the kernel without asking.
    """
    nb = nbformat.read(src, as_version=4)
    idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if idx is None:
        raise ValueError(f"{src}: no code cell tagged 'parameters' to inject SMOKE after")
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(f"SMOKE = True\nOUT_DIR = {str(out_dir)!r}"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


def write_notebook(path: Path, cells: list[str], title: str) -> Path:
    """Write a notebook of one markdown title cell and the given code cells (python3 kernel)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# The state of the notebook at ``path`` as the page sees it: whether it is the active tab, kernel status,
# and per non-empty code cell its execution count, a [*] prompt and its error output.
_NOTEBOOK_STATE_JS = r"""(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const session = panel.sessionContext.session;
  const kernel = session && session.kernel;
  const cells = panel.content.widgets
    .filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== '')
    .map(c => {
      const err = c.model.outputs.toJSON().find(o => o.output_type === 'error');
      const prompt = c.node.querySelector('.jp-InputPrompt');
      return {count: c.model.executionCount,
              head: c.model.sharedModel.getSource().trim().split('\n')[0].slice(0, 80),
              pending: !!prompt && prompt.textContent.includes('*'),
              error: err ? `${err.ename}: ${err.evalue}` : null};
    });
  return {active: app.shell.currentWidget === panel, ready: panel.sessionContext.isReady,
          kernel: kernel ? kernel.status : 'none', cells};
}"""


def notebook_state(page, rel_path: str) -> dict | None:
    """The state of the open notebook ``rel_path`` (None while it is not open)."""
    return page.evaluate(_NOTEBOOK_STATE_JS, rel_path)


def open_notebook(page, server: LabServer, rel_path: str, timeout: float = 90.0) -> None:
    """Open ``rel_path`` (relative to the server root) in a fresh JupyterLab workspace; wait for an idle kernel."""
    workspace = f"xaikit-{secrets.token_hex(4)}"  # a new workspace: no tabs restored from an earlier test
    page.goto(server.url(f"lab/workspaces/{workspace}/tree/{rel_path}"), wait_until="domcontentloaded",
              timeout=timeout * 1000)
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = notebook_state(page, rel_path)
        if state and state["active"] and state["ready"] and state["kernel"] == "idle":
            return
        time.sleep(0.25)
    raise TimeoutError(f"{rel_path}: not open with an idle kernel after {timeout:.0f} s; last state: {state}")


def run_all_cells(page, rel_path: str, timeout: float, start_timeout: float = 20.0) -> dict:
    """Click Run > Run All Cells, wait until every code cell ran (or one failed) and the kernel is idle.

    Returns the final notebook state; raises ``AssertionError`` naming the failing cell, or ``TimeoutError``.
    """
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="Run").first.click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item").filter(has=label).click()
    start = time.monotonic()
    started, stable, state = False, 0, None
    while time.monotonic() < start + timeout:
        state = notebook_state(page, rel_path)
        cells = state["cells"] if state else []
        started = started or any(c["pending"] or c["count"] is not None or c["error"] for c in cells)
        if not started and time.monotonic() > start + start_timeout:
            raise TimeoutError(f"{rel_path}: Run All Cells started no cell within {start_timeout:.0f} s: {state}")
        failed = any(c["error"] for c in cells)
        finished = bool(cells) and all(c["count"] is not None for c in cells)
        idle = state is not None and state["kernel"] == "idle" and not any(c["pending"] for c in cells)
        stable = stable + 1 if idle and (finished or failed) else 0
        if stable >= 3:  # idle for three polls in a row: not a gap between two queued cells
            bad = next((c for c in cells if c["error"]), None)
            assert bad is None, f"the code cell starting {bad['head']!r} raised {bad['error']}"
            return state
        time.sleep(0.5)
    raise TimeoutError(f"{rel_path}: cells still running after {timeout:.0f} s; last state: {state}")


def float_slider(page, description: str):
    """The first ipywidgets slider whose label reads exactly ``description``."""
    label = page.locator(".widget-label").filter(has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    return page.locator(".widget-slider", has=label).first


def nearest_plot(slider):
    """Handle to the Plotly graph div in the nearest ancestor of ``slider`` that holds one (None if none)."""
    handle = slider.evaluate_handle("""(el) => {
      for (let node = el; node; node = node.parentElement) {
        const gd = node.querySelector && node.querySelector('.js-plotly-plot');
        if (gd) return gd;
      }
      return null;
    }""")
    return handle.as_element()


def trace_opacities(plot) -> list[float]:
    """Opacity of each trace of a Plotly graph div, as Plotly resolved it (default 1)."""
    return plot.evaluate("gd => (gd._fullData || gd.data || []).map(t => t.opacity === undefined ? 1 : t.opacity)")


def slider_value(slider) -> float:
    """The value an ipywidgets slider shows in its readout."""
    return float(slider.locator(".widget-readout").inner_text().strip())
