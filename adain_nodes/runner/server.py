"""Submitting a workflow to a running ComfyUI instead of running it here (standard library only).

POST /prompt with the API prompt (and the editor workflow for the PNG metadata), follow
progress over ComfyUI's websocket (falling back to polling /history when it is unavailable),
then download every output image through /view. Node errors from the server's validation are
reported like local ones.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

from .core_nodes import output_location, write_new_file

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server refused the workflow, failed while running it, or could not be reached."""


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                payload = json.loads(body)
            except ValueError:
                raise ServerError(f"{self.base}{path}: HTTP {exc.code}: {body[:500]!r}") from exc
            raise ServerError(format_server_error(payload)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(f"cannot reach ComfyUI at {self.base} ({exc}); is it running?") from exc

    def get_json(self, path: str) -> Any:
        return json.loads(self._request(path))

    def upload_image(self, path: Path) -> str:
        """POST /upload/image (overwriting a file of the same name); returns the server-side name."""
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n",
                 f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode(),
                 f"--{boundary}--\r\n".encode()]
        answer = json.loads(self._request("/upload/image", b"".join(parts),
                                          {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return answer["name"] if not answer.get("subfolder") else f"{answer['subfolder']}/{answer['name']}"

    def queue(self, prompt: dict, workflow: dict | None) -> str:
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        answer = json.loads(self._request("/prompt", json.dumps(body).encode(), {"Content-Type": "application/json"}))
        if answer.get("node_errors"):
            raise ServerError(format_server_error(answer))
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")


def format_server_error(payload: dict) -> str:
    """ComfyUI's /prompt error body as lines: the error, then each node's errors."""
    error = payload.get("error") or {}
    lines = [error.get("message", "the server refused the workflow") if isinstance(error, dict) else str(error)]
    if isinstance(error, dict) and error.get("details"):
        lines[0] += f": {error['details']}"
    for node_id, entry in (payload.get("node_errors") or {}).items():
        for reason in entry.get("errors", []):
            lines.append(f"  node {node_id} ({entry.get('class_type')}): {reason.get('message')}: "
                         f"{reason.get('details')}")
    return "\n".join(lines)


class _WebSocket:
    """Just enough of RFC 6455 to read ComfyUI's JSON status messages (client side, no extensions)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise OSError("websocket progress needs a plain http:// server")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        header = b""
        while b"\r\n\r\n" not in header:
            chunk = self.sock.recv(1024)
            if not chunk:
                raise OSError("websocket handshake failed")
            header += chunk
        if b" 101 " not in header.split(b"\r\n", 1)[0]:
            raise OSError(f"websocket refused: {header.splitlines()[0]!r}")
        self.buffer = header.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self) -> str | None:
        """The next text message (binary preview frames are skipped); None on a timeout."""
        try:
            while True:
                b1, b2 = self._read(2)
                length = b2 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._read(8))[0]
                payload = self._read(length)
                opcode = b1 & 0x0F
                if opcode == 0x8:
                    raise OSError("websocket closed by the server")
                if opcode == 0x1:
                    return payload.decode("utf-8", "replace")
        except socket.timeout:
            return None

    def close(self) -> None:
        self.sock.close()


def run_on_server(base_url: str, prompt: dict, workflow: dict | None, output_dir: Path,
                  input_dir: Path | None, progress: Callable[[str], None], timeout: float = 3600.0) -> list[Path]:
    """Queue ``prompt`` on a ComfyUI server, follow it, and download its output images."""
    client = ComfyClient(base_url)
    if input_dir is not None:
        for node in prompt.values():
            name = node.get("inputs", {}).get("image") if node.get("class_type") == "LoadImage" else None
            if isinstance(name, str) and (Path(input_dir) / name).is_file():
                progress(f"uploading {name}")
                client.upload_image(Path(input_dir) / name)
    ws = None
    try:
        ws = _WebSocket(client.base + f"/ws?clientId={client.client_id}", 2.0)
    except OSError as exc:
        log.info("no websocket progress (%s); polling /history", exc)
    prompt_id = client.queue(prompt, workflow)
    progress(f"queued as prompt {prompt_id} on {client.base}")
    deadline = time.monotonic() + timeout
    entry = None
    try:
        while time.monotonic() < deadline:
            if ws is not None:
                try:
                    message = ws.receive()
                except OSError:
                    ws = None
                    continue
                if message:
                    _report_message(json.loads(message), prompt_id, prompt, progress)
            else:
                time.sleep(0.5)
            entry = client.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                break
            entry = None
    finally:
        if ws is not None:
            ws.close()
    if entry is None:
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
    status = entry.get("status", {})
    if status.get("status_str") == "error":
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                raise ServerError(f"Error while executing node {data.get('node_id')} ({data.get('node_type')}): "
                                  f"{data.get('exception_type')}: {data.get('exception_message')}")
        raise ServerError(f"prompt {prompt_id} failed on the server")
    written = []
    for node_output in entry.get("outputs", {}).values():
        for image in node_output.get("images", []):
            prefix = os.path.join("temp" if image.get("type") == "temp" else "", str(image.get("subfolder") or ""),
                                  Path(str(image["filename"])).name)
            try:
                folder, _, filename = output_location(output_dir, prefix)
            except ValueError as exc:
                raise ServerError(f"the server named an output outside {output_dir}: {exc}") from None
            written.append(write_new_file(folder, filename, client.view(image)))
    return written


def _report_message(message: dict, prompt_id: str, prompt: dict, progress: Callable[[str], None]) -> None:
    data = message.get("data") or {}
    if data.get("prompt_id") not in (None, prompt_id):
        return
    kind = message.get("type")
    if kind == "executing" and data.get("node") is not None:
        node = str(data["node"])
        progress(f"node {node} {prompt.get(node, {}).get('class_type', '')}")
    elif kind == "execution_cached" and data.get("nodes"):
        progress(f"cached: {', '.join(map(str, data['nodes']))}")
    elif kind == "progress":
        progress(f"  node {data.get('node')}: {data.get('value')}/{data.get('max')}")
