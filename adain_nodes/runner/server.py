"""Submitting a workflow to a running ComfyUI instead of running it here (standard library only).

POST /prompt with the API prompt (and the editor workflow for the PNG metadata), follow
progress over ComfyUI's websocket (falling back to polling /history when it is unavailable),
then download every output image through /view. Node errors from the server's validation are
reported like local ones.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..file_walk import is_regular_file
from ..http_stream import RateWatch, Stream, TooSlow
from .core_nodes import Folders, output_location, write_new_file

log = logging.getLogger(__name__)


# Bounds on what a server may send: a JSON answer (the history of a large workflow is well under this), an
# output image (streamed to disk, never held in memory) and a websocket message (progress JSON, previews).
MAX_JSON_BYTES = 64 << 20
MAX_IMAGE_BYTES = 1 << 30
MAX_WS_MESSAGE_BYTES = 16 << 20
MAX_WS_HANDSHAKE_BYTES = 64 << 10
# The longest file name most file systems take, in bytes (a server's output name is one such name).
MAX_NAME_BYTES = 255
ERROR_EXCERPT = 200


class ServerError(RuntimeError):
    """The server refused the workflow, failed while running it, could not be reached or answered nonsense."""


def _excerpt(data: Any) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= ERROR_EXCERPT else text[:ERROR_EXCERPT] + f"... ({len(text)} characters)"


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None,
                 limit: int = MAX_JSON_BYTES, sink: BinaryIO | None = None) -> bytes:
        """The response body (or, with ``sink``, written to it): at most ``limit`` bytes, arriving at the
        download's minimum rate (``http_stream``), or a ServerError."""
        url = self.base + path
        request = urllib.request.Request(url, data=data, headers=headers or {})
        watch = RateWatch(f"{url}: the server")
        try:
            with Stream(request, self.timeout, errors_as_responses=True) as stream:
                response = stream.response(watch)
                status = getattr(response, "status", None) or getattr(response, "code", 200)
                if status >= 400:
                    sink = None  # an error body is read into memory (bounded) to be reported
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > limit:
                    raise ServerError(f"{url}: the server announces {int(announced)} bytes, more than the {limit} "
                                      "this client accepts; stopped")
                body, size = bytearray(), 0
                for block in stream.blocks(watch):
                    size += len(block)
                    if size > limit:
                        raise ServerError(f"{url}: the server sent more than the {limit} bytes this client accepts; "
                                          "stopped")
                    if sink is not None:
                        try:
                            sink.write(block)
                        except OSError as exc:  # a full disk is not an unreachable server
                            raise ServerError(f"cannot write what {url} sends: {exc.strerror or exc}") from None
                    else:
                        body += block
                    watch.received(size)
        except TooSlow as exc:
            raise ServerError(str(exc)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise ServerError(f"cannot reach ComfyUI at {self.base} ({getattr(exc, 'reason', exc)}); is it "
                              "running?") from None
        if status >= 400:
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                raise ServerError(f"{url}: HTTP {status}: {_excerpt(bytes(body))}") from None
            raise ServerError(format_server_error(payload))
        return bytes(body)

    def get_json(self, path: str, data: bytes | None = None, headers: dict | None = None) -> Any:
        body = self._request(path, data, headers)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ServerError(f"{self.base}{path}: the server's answer is not JSON: {_excerpt(body)}") from None

    def upload_image(self, path: Path, subfolder: str) -> None:
        """POST /upload/image into ``subfolder`` of the server's input folder, overwriting a file of the name."""
        boundary = uuid.uuid4().hex
        fields = [("overwrite", "true")] + ([("subfolder", subfolder)] if subfolder else [])
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"]
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
                  for key, value in fields]
        parts.append(f"--{boundary}--\r\n".encode())
        self.get_json("/upload/image", b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def queue(self, prompt: dict, workflow: dict | None) -> str:
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        answer = self.get_json("/prompt", json.dumps(body).encode(), {"Content-Type": "application/json"})
        if not isinstance(answer, dict):
            raise ServerError(f"{self.base}/prompt: the server answered {_excerpt(answer)}, not an object")
        if answer.get("node_errors") or answer.get("error"):
            raise ServerError(format_server_error(answer))
        prompt_id = answer.get("prompt_id")
        if not isinstance(prompt_id, (str, int)) or isinstance(prompt_id, bool) or not str(prompt_id).strip():
            raise ServerError(f"{self.base}/prompt: the answer has no prompt_id: {_excerpt(answer)}")
        return str(prompt_id)

    def history(self, prompt_id: str) -> dict | None:
        path = f"/history/{urllib.parse.quote(prompt_id)}"
        answer = self.get_json(path)
        if not isinstance(answer, dict):
            raise ServerError(f"{self.base}{path}: the server answered {_excerpt(answer)}, not an object")
        entry = answer.get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise ServerError(f"{self.base}{path}: the prompt's entry is {_excerpt(entry)}, not an object")
        return entry

    def view(self, image: dict[str, str], sink: BinaryIO) -> None:
        query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        self._request(f"/view?{query}", limit=MAX_IMAGE_BYTES, sink=sink)


def format_server_error(payload: Any) -> str:
    """ComfyUI's /prompt error body as lines: the error, then each node's errors (whatever their shape)."""
    if not isinstance(payload, dict):
        return f"the server refused the workflow: {_excerpt(payload)}"
    error = payload.get("error") or {}
    lines = [str(error.get("message", "the server refused the workflow")) if isinstance(error, dict)
             else _excerpt(str(error))]
    if isinstance(error, dict) and error.get("details"):
        lines[0] += f": {_excerpt(str(error['details']))}"
    node_errors = payload.get("node_errors")
    for node_id, entry in (node_errors.items() if isinstance(node_errors, dict) else ()):
        reasons = entry.get("errors") if isinstance(entry, dict) else None
        for reason in reasons if isinstance(reasons, list) else [entry]:
            if isinstance(reason, dict):
                lines.append(f"  node {_excerpt(str(node_id))} ({_excerpt(str(entry.get('class_type')))}): "
                             f"{_excerpt(str(reason.get('message')))}: {_excerpt(str(reason.get('details')))}")
            else:
                lines.append(f"  node {_excerpt(str(node_id))}: {_excerpt(reason)}")
    return "\n".join(lines)


class _WebSocket:
    """Just enough of RFC 6455 to read ComfyUI's JSON status messages (client side, no extensions).

    Bounded like the HTTP requests: the handshake and each message have a size limit, and ``receive``
    returns within its wait however the server trickles bytes; a frame is taken from the buffer only
    once it is whole, so a wait that ends mid-frame loses nothing."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise OSError("websocket progress needs a plain http:// server")
        self.wait = timeout
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        header = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in header:
            if len(header) > MAX_WS_HANDSHAKE_BYTES or time.monotonic() > deadline:
                raise OSError("websocket handshake too long")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1024)
            if not chunk:
                raise OSError("websocket handshake failed")
            header += chunk
        if b" 101 " not in header.split(b"\r\n", 1)[0]:
            raise OSError(f"websocket refused: {header.splitlines()[0][:ERROR_EXCERPT]!r}")
        self.buffer = header.split(b"\r\n\r\n", 1)[1]

    def _frame(self) -> tuple[int, bytes] | None:
        """The first whole frame in the buffer (opcode, payload), removed from it; None while incomplete."""
        if len(self.buffer) < 2:
            return None
        b1, b2 = self.buffer[0], self.buffer[1]
        length, offset = b2 & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(self.buffer) < offset + size:
                return None
            length = int.from_bytes(self.buffer[offset:offset + size], "big")
            offset += size
        if length > MAX_WS_MESSAGE_BYTES:
            raise OSError(f"websocket frame of {length} bytes, more than the {MAX_WS_MESSAGE_BYTES} accepted")
        mask = b""
        if b2 & 0x80:
            mask, offset = self.buffer[offset:offset + 4], offset + 4
        if len(self.buffer) < offset + length:
            return None
        payload, self.buffer = self.buffer[offset:offset + length], self.buffer[offset + length:]
        if mask:
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return b1 & 0x0F, payload

    def receive(self) -> str | None:
        """The next text message (binary preview frames are skipped); None when none came within the wait."""
        deadline = time.monotonic() + self.wait
        while True:
            frame = self._frame()
            if frame is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.sock.settimeout(remaining)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return None
                if not chunk:
                    raise OSError("websocket closed")
                self.buffer += chunk
                continue
            opcode, payload = frame
            if opcode == 0x8:
                raise OSError("websocket closed by the server")
            if opcode == 0x1:
                return payload.decode("utf-8", "replace")

    def close(self) -> None:
        self.sock.close()


def _check_output_name(name: Any, what: str) -> str:
    """A file or folder name the server gave for an output: text without control characters, separators or
    '..', short enough for the file system. It comes from a machine the client does not control."""
    if not isinstance(name, str):
        raise ServerError(f"the server named an output {what} {_excerpt(name)}, which is not text")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES and what == "file":
        raise ServerError(f"the server named an output file {_excerpt(name)}: longer than the {MAX_NAME_BYTES} "
                          "bytes a file name can have")
    if any(ord(ch) < 32 for ch in name) or (what == "file" and (name in ("", ".", "..") or "/" in name
                                                                  or "\\" in name)):
        raise ServerError(f"the server named an output {what} {_excerpt(name)}, which is no plain name")
    return name


def _output_images(entry: dict) -> list[dict[str, str]]:
    """The image records of a history entry, each checked: {filename, subfolder, type} as text."""
    outputs = entry.get("outputs", {})
    if not isinstance(outputs, dict):
        raise ServerError(f"the server's history has outputs {_excerpt(outputs)}, not an object")
    images = []
    for node_id, node_output in outputs.items():
        records = node_output.get("images", []) if isinstance(node_output, dict) else None
        if not isinstance(records, list):
            raise ServerError(f"the server's history lists node {_excerpt(str(node_id))}'s outputs as "
                              f"{_excerpt(node_output)}, not an object with a list of images")
        for image in records:
            if not isinstance(image, dict) or "filename" not in image:
                raise ServerError(f"node {_excerpt(str(node_id))}: the server's image record {_excerpt(image)} "
                                  "has no filename")
            kind = image.get("type") or "output"
            if kind not in ("output", "temp", "input"):
                raise ServerError(f"node {_excerpt(str(node_id))}: unknown image type {_excerpt(kind)}")
            images.append({"filename": _check_output_name(image["filename"], "file"),
                           "subfolder": _check_output_name(image.get("subfolder") or "", "folder"), "type": kind})
    return images


def _local_input(input_dir: Path, node_id: str, name: str) -> tuple[Path, str] | None:
    """The local file a LoadImage name stands for and its subfolder, if it is in ``input_dir`` and is to be
    uploaded; a name that leaves the input folder is refused (nothing outside it is ever read or sent)."""
    if any(ord(ch) < 32 for ch in name) or '"' in name:
        raise ServerError(f"node {node_id} (LoadImage): {_excerpt(name)} contains a control character or quote; "
                          "rename the file")
    if name.rstrip().endswith(("[output]", "[temp]")):
        return None  # a file of the server's own output folders: nothing local to send
    folders = Folders(input_dir, input_dir)
    try:
        path = folders.annotated_path(name)
    except ValueError:
        raise ServerError(f"node {node_id} (LoadImage): {_excerpt(name)} is not inside the input folder "
                          f"{input_dir}; nothing was sent. Name a file in that folder") from None
    if not path.exists():
        return None  # the server may have it; it says so if not
    if not is_regular_file(path):
        raise ServerError(f"node {node_id} (LoadImage): {path} is not a regular file; nothing was sent")
    subfolder = os.path.relpath(path.parent, os.path.abspath(input_dir))
    return path, "" if subfolder == "." else Path(subfolder).as_posix()


def run_on_server(base_url: str, prompt: dict, workflow: dict | None, output_dir: Path,
                  input_dir: Path | None, progress: Callable[[str], None], timeout: float = 3600.0) -> list[Path]:
    """Queue ``prompt`` on a ComfyUI server, follow it, and download its output images.

    LoadImage files are uploaded from ``input_dir`` only (none when it is None); every answer of the server
    is bounded in size and time and checked for shape before use (``ServerError`` otherwise)."""
    client = ComfyClient(base_url)
    uploads = []
    for node_id, node in prompt.items():
        name = node.get("inputs", {}).get("image") if node.get("class_type") == "LoadImage" else None
        if isinstance(name, str) and input_dir is not None:
            found = _local_input(Path(input_dir), str(node_id), name)
            if found is not None:
                uploads.append((name, *found))
    for name, path, subfolder in uploads:
        progress(f"uploading {name}")
        client.upload_image(path, subfolder)
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
                except OSError as exc:
                    log.info("websocket progress stopped (%s); polling /history", exc)
                    ws.close()
                    ws = None
                    continue
                if message:
                    _report_message(message, prompt_id, prompt, progress)
            else:
                time.sleep(0.5)
            entry = client.history(prompt_id)
            status = entry.get("status") if entry else None
            if isinstance(status, dict) and status.get("completed") is not None and (
                    status.get("completed") or status.get("status_str") == "error"):
                break
            entry = None
    finally:
        if ws is not None:
            ws.close()
    if entry is None:
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
    status = entry["status"]
    if status.get("status_str") == "error":
        messages = status.get("messages")
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error" and isinstance(
                    message[1], dict):
                data = message[1]
                raise ServerError(f"Error while executing node {_excerpt(str(data.get('node_id')))} "
                                  f"({_excerpt(str(data.get('node_type')))}): "
                                  f"{_excerpt(str(data.get('exception_type')))}: "
                                  f"{_excerpt(str(data.get('exception_message')))}")
        raise ServerError(f"prompt {prompt_id} failed on the server")
    written = []
    for image in _output_images(entry):
        prefix = os.path.join("temp" if image["type"] == "temp" else "", image["subfolder"], image["filename"])
        try:
            folder, _, filename = output_location(output_dir, prefix)
        except ValueError as exc:
            raise ServerError(f"the server named an output outside {output_dir}: {exc}") from None

        def fetch(tmp: str, image: dict[str, str] = image) -> None:
            with open(tmp, "wb") as sink:
                client.view(image, sink)

        try:
            written.append(write_new_file(folder, filename, fetch))
        except OSError as exc:
            raise ServerError(f"cannot write the output {_excerpt(image['filename'])} into {folder}: "
                              f"{exc.strerror or exc}") from None
    return written


def _report_message(text: str, prompt_id: str, prompt: dict, progress: Callable[[str], None]) -> None:
    """A progress line for a websocket status message; anything that is not one is ignored."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or data.get("prompt_id") not in (None, prompt_id):
        return
    kind = message.get("type")
    if kind == "executing" and data.get("node") is not None:
        node = str(data["node"])
        class_type = prompt[node].get("class_type", "") if isinstance(prompt.get(node), dict) else ""
        progress(f"node {_excerpt(node)} {class_type}")
    elif kind == "execution_cached" and data.get("nodes"):
        nodes = data["nodes"]
        progress(f"cached: {_excerpt(', '.join(map(str, nodes)) if isinstance(nodes, list) else nodes)}")
    elif kind == "progress":
        progress(f"  node {_excerpt(str(data.get('node')))}: {_excerpt(str(data.get('value')))}/"
                 f"{_excerpt(str(data.get('max')))}")
