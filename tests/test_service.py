"""The HTTP service as a client sees it: a real uvicorn server on 127.0.0.1, spoken to over HTTP with httpx."""
from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from xaikit.checkpoint import load_checkpoint  # noqa: E402
from xaikit.domain import assess_domain  # noqa: E402
from xaikit.io import read_image  # noqa: E402
from xaikit.saliency import explain  # noqa: E402
from xaikit.service import ServiceConfig, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data_samples" / "models" / "phantom_small_cnn.pt"
PNG = ROOT / "data_samples" / "images" / "img00000.png"
DICOM = ROOT / "data_samples" / "dicom" / "cxr_monochrome1.dcm"
SLOW = {"method": "integrated_gradients", "params": '{"n_steps": 150}'}  # seconds here, > 0.1 s on a fast CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(config: ServiceConfig):
    """Start the real server in a thread on a free loopback port; yield its base URL; stop it."""
    ckpt = load_checkpoint(MODEL)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ckpt, config), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def url(upload_dir):
    with running(ServiceConfig(max_upload_bytes=2**20, queue_size=8, upload_dir=str(upload_dir))) as base:
        yield base


def _post(url: str, path: str, file: Path | bytes, name: str = "image.png", **kw) -> httpx.Response:
    data = file.read_bytes() if isinstance(file, Path) else file
    return httpx.post(url + path, files={"file": (name, data)}, timeout=60, **kw)


def test_health_methods_and_docs(url):
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["model"]["classes"] == ["normal", "pneumonia"]
    methods = httpx.get(url + "/methods").json()
    assert {"gradcam", "lrp_epsilon_plus", "integrated_gradients"} <= set(methods)
    spec = httpx.get(url + "/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/methods"} <= set(spec["paths"])
    assert httpx.get(url + "/docs").status_code == 200


def test_predict_matches_the_model(url, upload_dir):
    body = _post(url, "/predict", PNG).json()
    ckpt = load_checkpoint(MODEL)
    probs = torch.softmax(ckpt.model(ckpt.preprocess(read_image(PNG))[0][None]).double(), 1)[0]
    got = [body["prediction"]["probabilities"][c] for c in ckpt.classes]
    np.testing.assert_allclose(got, probs.detach().numpy(), rtol=1e-6)
    assert body["prediction"]["class"] == ckpt.classes[int(probs.argmax())]
    assert body["domain"]["in_domain"] is True and body["domain"]["warning"] is None
    want = float(assess_domain(ckpt.model, ckpt.prepare(read_image(PNG)))[0])
    assert body["domain"]["distance"] == pytest.approx(want, abs=1e-4)
    assert not any(upload_dir.iterdir())  # the upload's temporary folder is gone


@pytest.mark.parametrize("path", ["/predict", "/explain?method=gradient"])
def test_every_response_says_when_the_upload_is_out_of_domain(url, path):
    from PIL import Image as PILImage

    grey = np.asarray(PILImage.open(PNG).convert("L"))
    buf = io.BytesIO()
    PILImage.fromarray(255 - grey).save(buf, format="PNG")  # inverted: nothing like the training phantoms
    body = _post(url, path, buf.getvalue()).json()
    domain = body["domain"]
    assert domain["in_domain"] is False and domain["distance"] > 1
    assert domain["flag"] == f"OUT OF DOMAIN ({domain['distance']:.1f}x threshold)"
    assert f"1 of 1 input(s) are far from the model's training domain ({domain['distance']:.1f} times" in \
        domain["warning"] and "synthetic phantom" in domain["trained_on"]


def test_explain_returns_the_library_map_and_an_overlay(url, upload_dir):
    response = _post(url, "/explain?method=gradcam", DICOM, name="Doe^John_12345.dcm")
    assert response.status_code == 200, response.text
    body = response.json()
    got = np.load(io.BytesIO(base64.b64decode(body["map_npy_base64"])))
    ckpt = load_checkpoint(MODEL)
    want = explain(ckpt.model, ckpt.preprocess(read_image(DICOM))[0][None], "gradcam").maps[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"])))
    height, width = read_image(DICOM).shape
    assert overlay.size[0] == width and height < overlay.size[1] < 1.2 * height and overlay.mode == "RGB"
    # a phantom radiograph as MONOCHROME1 DICOM: in domain, said in the JSON and the title band (black, not red)
    assert body["domain"]["in_domain"] is True and body["domain"]["warning"] is None
    assert body["domain"]["flag"] == f"in domain ({body['domain']['distance']:.2f})"
    assert np.median(np.asarray(overlay.convert("RGB"))[:8, :, 0]) == 0
    assert body["method"] == "gradcam" and body["target_policy"] == "pred" and "layer" in body["params"]
    text = str({k: v for k, v in body.items() if not k.endswith("_base64")})
    assert "Doe" not in text and "12345" not in text  # the upload's name is never echoed
    assert not any(upload_dir.iterdir())


@pytest.mark.parametrize("path, payload, name, status, message", [
    ("/predict", b"this is not an image", "notes.png", 422, "upload.png"),
    ("/predict", DICOM.read_bytes()[:600], "scan.dcm", 422, "upload.dcm"),
    ("/predict", b"\0" * (2**20 + 10), "big.png", 413, "larger than the limit"),
    ("/explain?method=gradcamm", PNG.read_bytes(), "a.png", 422, "'gradcamm' is not known"),
    ("/explain?target=9", PNG.read_bytes(), "a.png", 422, "class index 0..1"),
])
def test_bad_uploads_get_clear_errors(url, upload_dir, path, payload, name, status, message):
    response = _post(url, path, payload, name=name)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert not any(upload_dir.iterdir())


def test_only_the_methods_own_parameters_are_accepted(url):
    response = httpx.post(url + "/explain?method=gradient", files={"file": ("a.png", PNG.read_bytes())},
                          data={"params": '{"memory_budget": 1e12}'}, timeout=60)
    assert response.status_code == 422 and "not parameters of gradient" in response.json()["detail"]
    response = httpx.post(url + "/explain?method=integrated_gradients", files={"file": ("a.png", PNG.read_bytes())},
                          data={"params": '{"n_steps": 4}'}, timeout=60)
    assert response.status_code == 200 and response.json()["params"]["n_steps"] == 4


def test_the_token_never_shows_in_a_repr():
    assert "s3cret" not in repr(ServiceConfig(token="s3cret"))


def test_a_body_without_content_length_is_still_limited(url):
    head = (b'--xbound\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")

    def chunks():  # a well-formed multipart body of 2.5 MiB, streamed (chunked transfer encoding)
        yield head
        for _ in range(40):
            yield b"\0" * 2**16
        yield b"\r\n--xbound--\r\n"

    response = httpx.post(url + "/predict", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=xbound"}, timeout=60)
    assert response.status_code == 413


def test_token_is_required_except_for_health():
    with running(ServiceConfig(token="s3cret")) as base:
        assert httpx.get(base + "/health").status_code == 200
        assert httpx.get(base + "/methods").status_code == 401
        assert httpx.get(base + "/methods", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert _post(base, "/predict", PNG).status_code == 401
        ok = _post(base, "/predict", PNG, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_full_queue_answers_503_with_retry_after_and_a_timeout_504():
    with running(ServiceConfig(queue_size=1, timeout_s=0.1, retry_after_s=3)) as base:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(lambda: httpx.post(base + f"/explain?method={SLOW['method']}",
                                                  files={"file": ("a.png", PNG.read_bytes())},
                                                  data={"params": SLOW["params"]}, timeout=60))
            deadline = time.monotonic() + 30
            while httpx.get(base + "/health").json()["in_flight"] < 1:
                assert time.monotonic() < deadline and not slow.done(), slow.result().text
                time.sleep(0.01)
            busy = _post(base, "/predict", PNG)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
            assert slow.result().status_code == 504
        deadline = time.monotonic() + 60
        while httpx.get(base + "/health").json()["in_flight"]:  # the slot frees when the work really ends
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _post(base, "/predict", PNG).status_code != 503  # admitted again (200, or 504 on a slow machine)


def test_load_every_request_is_answered(url):
    """80 requests from 8 concurrent clients: all answered 200 (queue 8 >= clients), none lost (200 in the
    benchmark)."""
    data = PNG.read_bytes()

    def client(n: int) -> list[int]:
        with httpx.Client(timeout=60) as c:
            return [c.post(url + "/predict", files={"file": ("a.png", data)}).status_code for _ in range(n)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(client, [10] * 8) for c in batch]
    assert len(codes) == 80 and set(codes) == {200}


def test_xaikit_serve_runs_the_service_from_the_command_line():
    """``xaikit serve`` in a subprocess: loopback by default, the token taken from XAIKIT_TOKEN."""
    import os
    import subprocess
    import sys

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XAIKIT_TOKEN": "t0ken", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "xaikit", "serve", str(MODEL), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "xaikit serve did not come up"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/health").status_code == 200:
                    break
            time.sleep(0.2)
        assert httpx.get(base + "/methods").status_code == 401
        ok = _post(base, "/predict", PNG, name="Doe^John_P0094.png", headers={"Authorization": "Bearer t0ken"})
        assert ok.status_code == 200 and set(ok.json()["prediction"]["probabilities"]) == {"normal", "pneumonia"}
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log
    assert "/predict" in log and "Doe" not in log and "P0094" not in log  # the upload's name is in no log line
