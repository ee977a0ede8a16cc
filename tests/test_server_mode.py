"""``run --server``: a client of a server it does not trust, running workflows from anywhere.

Against a fake ComfyUI on localhost: nothing outside --input-dir is ever read or sent; every answer is
bounded in size and time (streamed to disk, under the download's minimum rate); malformed answers give one
clear line and exit 1, never a traceback or a hang.
"""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from adain_nodes import http_stream
from adain_nodes.cli import main
from adain_nodes.runner import server as server_module

PNG = io.BytesIO()
Image.new("RGB", (4, 4), (10, 20, 30)).save(PNG, format="PNG")
PNG = PNG.getvalue()
DONE = {"status": {"completed": True, "status_str": "success"},
        "outputs": {"2": {"images": [{"filename": "result.png", "subfolder": "", "type": "output"}]}}}
# How long a misbehaving fake server keeps at it; the client must give up well before.
STALL_SECONDS = 20.0


class _Handler(BaseHTTPRequestHandler):
    """ComfyUI's endpoints as ``behaviour`` says: a dict of path prefix -> bytes, or a callable(handler)."""

    behaviour: dict = {}
    received: list = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append((self.command, self.path, body))
        for prefix, reply in self.behaviour.items():
            if self.path.startswith(prefix):
                try:
                    reply(self) if callable(reply) else self._answer(reply)
                except (ConnectionError, OSError):
                    pass
                return
        self._answer(b'{"error": "not found"}', 404)

    do_GET = do_POST = _dispatch


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


@pytest.fixture
def comfy(tmp_path):
    """A fake ComfyUI: set ``_Handler.behaviour``; ``_Handler.received`` lists (method, path, body)."""
    _Handler.behaviour = {"/prompt": b'{"prompt_id": "p1", "number": 1, "node_errors": {}}',
                          "/history/p1": json.dumps({"p1": DONE}).encode(), "/view": PNG,
                          "/upload/image": b'{"name": "x.png", "subfolder": "", "type": "input"}'}
    _Handler.received = []
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    inputs, out = tmp_path / "input", tmp_path / "out"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "a.png").write_bytes(PNG)
    (inputs / "sub" / "b.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(b"a private file outside the input folder")
    return inputs, out


def _workflow(tmp_path: Path, image: str) -> Path:
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(prompt))
    return path


def _run(comfy: str, folders, workflow: Path, capsys, limit: float = STALL_SECONDS) -> tuple[int, str, float]:
    """The CLI in a thread, so a client that hangs fails the test instead of blocking it."""
    inputs, out = folders
    result = {}
    started = time.monotonic()

    def target() -> None:
        result["code"] = main(["run", str(workflow), "--server", comfy, "--input-dir", str(inputs),
                               "--output-dir", str(out)])

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the client still waits after {limit:.0f} s"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return result["code"], captured.out, time.monotonic() - started


def _leftovers(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []


@pytest.mark.parametrize("name", ["../secret.png", "../../../../etc/passwd", "/etc/hostname", "sub/../../secret.png",
                                  "SECRET_ABSOLUTE"])
def test_nothing_outside_the_input_folder_is_read_or_sent(comfy, folders, tmp_path, capsys, name):
    name = str(tmp_path / "secret.png") if name == "SECRET_ABSOLUTE" else name
    code, out, _ = _run(comfy, folders, _workflow(tmp_path, name), capsys)
    assert code == 1 and "not inside the input folder" in out
    assert _Handler.received == []  # nothing uploaded, nothing queued
    assert all(b"private file" not in body for _, _, body in _Handler.received)


def test_files_in_the_input_folder_are_uploaded_with_their_subfolder_and_outputs_fetched(comfy, folders, tmp_path,
                                                                                       capsys):
    code, out, _ = _run(comfy, folders, _workflow(tmp_path, "sub/b.png"), capsys)
    assert code == 0, out
    upload = next(body for method, path, body in _Handler.received if path == "/upload/image")
    assert PNG in upload and b'name="subfolder"\r\n\r\nsub\r\n' in upload
    assert (folders[1] / "result.png").read_bytes() == PNG and _leftovers(folders[1]) == ["result.png"]


def test_a_named_pipe_in_the_input_folder_is_refused_not_read(comfy, folders, tmp_path, capsys):
    import os

    os.mkfifo(folders[0] / "pipe.png")
    code, out, _ = _run(comfy, folders, _workflow(tmp_path, "pipe.png"), capsys)
    assert code == 1 and "not a regular file" in out and _Handler.received == []


LONG_NAME = "x" * 5000 + ".png"
MALFORMED = {
    "prompt not JSON": ("/prompt", b"<html>oops</html>", "not JSON"),
    "prompt a list": ("/prompt", b"[]", "not an object"),
    "prompt without id": ("/prompt", b"{}", "no prompt_id"),
    "prompt id null": ("/prompt", b'{"prompt_id": null}', "no prompt_id"),
    "node errors a list": ("/prompt", b'{"node_errors": [1, 2], "error": "bad"}', "bad"),
    "history a list": ("/history/p1", b"[1, 2]", "not an object"),
    "history not JSON": ("/history/p1", b"\xff\xfe", "not JSON"),
    "entry a string": ("/history/p1", b'{"p1": "done"}', "not an object"),
    "status a list": ("/history/p1", b'{"p1": {"status": [], "outputs": {}}}', "did not finish"),
    "image without filename": ("/history/p1", json.dumps({"p1": {**DONE, "outputs": {"2": {"images": [
        {"subfolder": "", "type": "output"}]}}}}).encode(), "has no filename"),
    "images not a list": ("/history/p1", json.dumps({"p1": {**DONE, "outputs": {"2": {"images": 7}}}}).encode(),
                          "not an object with a list of images"),
    "file name of 5000 characters": ("/history/p1", json.dumps({"p1": {**DONE, "outputs": {"2": {"images": [
        {"filename": LONG_NAME, "subfolder": "", "type": "output"}]}}}}).encode(), "longer than the 255 bytes"),
    "file name a number": ("/history/p1", json.dumps({"p1": {**DONE, "outputs": {"2": {"images": [
        {"filename": 5, "type": "output"}]}}}}).encode(), "not text"),
    "execution error of odd shape": ("/history/p1", json.dumps({"p1": {"status": {
        "completed": False, "status_str": "error", "messages": [["execution_error", [1]], 5]}}}).encode(),
        "failed on the server"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_answers_get_one_clear_line(comfy, folders, tmp_path, capsys, monkeypatch, case):
    path, body, expected = MALFORMED[case]
    _Handler.behaviour[path] = body
    run_on_server = server_module.run_on_server
    if case == "status a list":  # never completes: the prompt's own timeout ends it
        monkeypatch.setattr(server_module, "run_on_server", lambda *a, **k: run_on_server(*a, **{**k, "timeout": 1.5}))
    code, out, _ = _run(comfy, folders, _workflow(tmp_path, "a.png"), capsys)
    lines = [line for line in out.splitlines() if not line.startswith(("workflow ", "uploading ", "queued as"))]
    assert code == 1 and len(lines) == 1 and expected in lines[0], out
    assert len(lines[0]) < 600
    assert _leftovers(folders[1]) == []


def _endless(handler, announce: bool, pause: float = 0.0, block: bytes = b"\0" * 65536) -> None:
    handler.send_response(200)
    if announce:
        handler.send_header("Content-Length", str(8 << 30))
    handler.end_headers()
    deadline = time.monotonic() + STALL_SECONDS
    while time.monotonic() < deadline:
        handler.wfile.write(block)
        handler.wfile.flush()
        time.sleep(pause)


@pytest.mark.parametrize("endpoint", ["/view", "/history/p1"])
@pytest.mark.parametrize("announce", [True, False])
def test_huge_answers_are_refused_at_a_bound_and_nothing_is_left(comfy, folders, tmp_path, capsys, monkeypatch,
                                                                 endpoint, announce):
    monkeypatch.setattr(server_module, "MAX_IMAGE_BYTES", 1 << 20)
    monkeypatch.setattr(server_module, "MAX_JSON_BYTES", 1 << 20)
    _Handler.behaviour[endpoint] = lambda handler: _endless(handler, announce)
    code, out, seconds = _run(comfy, folders, _workflow(tmp_path, "a.png"), capsys)
    assert code == 1 and "this client accepts" in out and seconds < STALL_SECONDS / 2
    assert _leftovers(folders[1]) == []  # nothing half-written, no temporary


@pytest.mark.parametrize("endpoint", ["/view", "/history/p1", "/prompt"])
def test_a_trickling_server_is_stopped_by_the_minimum_rate(comfy, folders, tmp_path, capsys, monkeypatch, endpoint):
    monkeypatch.setattr(http_stream, "MIN_RATE", 20_000)
    monkeypatch.setattr(http_stream, "RATE_WINDOW", 1.0)
    _Handler.behaviour[endpoint] = lambda handler: _endless(handler, False, pause=0.2, block=b" ")
    code, out, seconds = _run(comfy, folders, _workflow(tmp_path, "a.png"), capsys)
    assert code == 1 and "below the minimum of 20 KiB/s" in out and seconds < STALL_SECONDS / 2
    assert _leftovers(folders[1]) == []


def _websocket(frames: bytes, trickle: bool):
    def reply(handler) -> None:
        handler.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        handler.wfile.write(frames)
        handler.wfile.flush()
        deadline = time.monotonic() + STALL_SECONDS
        while time.monotonic() < deadline:
            if trickle:
                handler.wfile.write(b"\0")
                handler.wfile.flush()
            time.sleep(0.3)
    return reply


@pytest.mark.parametrize("frames", [b"\x81\x7f" + (1 << 40).to_bytes(8, "big"), b"\x81\x7e\xff\xff"],
                         ids=["frame of 2^40 bytes", "frame trickled"])
def test_a_websocket_that_announces_or_trickles_forever_does_not_hold_the_client(comfy, folders, tmp_path, capsys,
                                                                              frames):
    _Handler.behaviour["/ws"] = _websocket(frames, trickle=True)
    code, out, seconds = _run(comfy, folders, _workflow(tmp_path, "a.png"), capsys)
    assert code == 0, out
    assert seconds < STALL_SECONDS / 2 and (folders[1] / "result.png").read_bytes() == PNG


def test_websocket_progress_is_reported(comfy, folders, tmp_path, capsys):
    message = json.dumps({"type": "executing", "data": {"node": "2", "prompt_id": "p1"}}).encode()
    frames = b"\x81" + bytes([len(message)]) + message + b"\x81\x03[1]" + b"\x81\x02{]"
    _Handler.behaviour["/ws"] = _websocket(frames, trickle=False)
    code, out, _ = _run(comfy, folders, _workflow(tmp_path, "a.png"), capsys)
    assert code == 0 and "node 2 SaveImage" in out
