"""Downloads of the released weights against a local HTTP server (no internet): verification, resume, errors.

The real hashes pin the real 80 MB files, so each test patches the known-files table with the hash and
size of a small fake served from 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from adain_nodes import download as dl
from adain_nodes import http_stream
from adain_nodes.cli import main as cli_main
from adain_nodes.download import DownloadError, ReleasedFile
from adain_nodes.errors import AdaINInputError
from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import load_encoder, read_tensors
from conftest import REPO, random_decoder


class _Handler(BaseHTTPRequestHandler):
    """Serves ``files`` with Range support; ``modes[name]`` makes it misbehave."""

    files: dict[str, bytes] = {}
    modes: dict[str, str] = {}
    log: list[tuple[str, str | None, int]] = []
    truncated_once: set[str] = set()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/").split("/")[-1]
        mode = self.modes.get(name, "ok")
        rng = self.headers.get("Range")
        if mode in ("500", "404") or name not in self.files:
            code = 500 if mode == "500" else 404
            self.log.append((name, rng, code))
            self.send_error(code)
            return
        data = self.files[name]
        if mode == "slow_headers":  # a status line, then nothing for longer than any test waits
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.wfile.flush()
            time.sleep(SLOW_SERVER_SECONDS)
            self.close_connection = True
            return
        if mode == "corrupt":
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        start = 0
        if rng and mode != "ignore_range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.log.append((name, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
        status = 206 if start else 200
        self.log.append((name, rng, status))
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if mode in ("trickle", "silent"):
            self._slowly(body[:1000] if mode == "trickle" else b"")
            return
        cut = mode == "truncate_always" or (mode == "truncate_once" and name not in self.truncated_once)
        if cut:
            self.truncated_once.add(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


    def _slowly(self, body: bytes) -> None:
        """A byte every 20 ms (or nothing), until SLOW_SERVER_SECONDS have passed, then a broken connection."""
        ends = time.monotonic() + SLOW_SERVER_SECONDS
        try:
            for byte in body:
                if time.monotonic() > ends:
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.02)
            time.sleep(max(ends - time.monotonic(), 0))
        except OSError:
            pass
        self.close_connection = True


SLOW_SERVER_SECONDS = 6.0


class _QuietServer(ThreadingHTTPServer):
    """Several tests make the client hang up mid-body on purpose: the server's broken pipe is expected there,
    not a traceback on stderr. Any other error in a handler is still reported."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/release"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def release(server, monkeypatch, tmp_path):
    """A fresh fake release: ``publish(name, data, size=True)`` serves ``data`` and pins its hash."""
    _Handler.files, _Handler.modes, _Handler.log, _Handler.truncated_once = {}, {}, [], set()
    monkeypatch.setenv(dl.BASE_URL_ENV, server)
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(models))

    def publish(name: str, data: bytes, pin_size: bool = True) -> bytes:
        _Handler.files[name] = data
        kind = dl.RELEASED[name].kind
        monkeypatch.setitem(dl.RELEASED, name, ReleasedFile(name, hashlib.sha256(data).hexdigest(),
                                                            len(data) if pin_size else None, kind))
        return data

    publish.models = models
    return publish


BLOB = os.urandom(700_000)


def _state_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fake_encoder_pth() -> bytes:
    """A released-style encoder file (the keys up to relu4_1 are enough for load_encoder), 14 MB."""
    torch.manual_seed(0)
    return _state_bytes(VGGEncoder().state_dict())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_correct_file_with_progress(release, tmp_path):
    data = release("decoder.pth", BLOB)
    seen = []
    path = dl.download("decoder.pth", tmp_path / "d", progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == data and _leftovers(tmp_path / "d") == ["decoder.pth"]
    assert seen[-1] == (len(data), len(data)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [status for *_, status in _Handler.log] == [200]


def test_wrong_content_is_refused_and_nothing_is_left(release, tmp_path):
    release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = "corrupt"
    with pytest.raises(DownloadError, match=r"sha256 [0-9a-f]{64} does not match the released decoder.pth"):
        dl.download("decoder.pth", tmp_path / "d")
    assert _leftovers(tmp_path / "d") == []


def test_hash_only_file_of_unknown_size_is_verified(release, tmp_path):
    release("decoder.pth", BLOB, pin_size=False)
    _Handler.modes["decoder.pth"] = "corrupt"
    with pytest.raises(DownloadError, match="sha256"):
        dl.download("decoder.pth", tmp_path / "d")
    _Handler.modes["decoder.pth"] = "ok"
    assert dl.download("decoder.pth", tmp_path / "d").read_bytes() == BLOB


def test_announced_size_that_differs_is_refused_before_the_transfer(release, tmp_path, monkeypatch):
    release("vgg_normalised.pth", BLOB)
    _Handler.files["vgg_normalised.pth"] = BLOB + b"extra"
    with pytest.raises(DownloadError, match="announces 700005 bytes but vgg_normalised.pth has 700000"):
        dl.download("vgg_normalised.pth", tmp_path / "d")
    assert _leftovers(tmp_path / "d") == []


def test_endless_body_of_unknown_size_is_cut_off(release, tmp_path, monkeypatch):
    release("decoder.pth", BLOB, pin_size=False)
    monkeypatch.setattr(dl, "MAX_UNKNOWN_SIZE", 100_000)
    with pytest.raises(DownloadError, match="100000"):
        dl.download("decoder.pth", tmp_path / "d")
    assert _leftovers(tmp_path / "d") == []


def test_truncated_transfer_resumes_on_retry(release, tmp_path):
    data = release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = "truncate_once"
    assert dl.download("decoder.pth", tmp_path / "d").read_bytes() == data
    (first, _, s1), (second, rng, s2) = _Handler.log
    assert (s1, s2) == (200, 206) and rng == f"bytes={len(data) // 2}-"
    assert _leftovers(tmp_path / "d") == ["decoder.pth"]


def test_truncated_transfer_keeps_part_and_next_run_resumes(release, tmp_path):
    data = release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = "truncate_always"
    with pytest.raises(DownloadError, match="broke off .* run the download again to resume"):
        dl.download("decoder.pth", tmp_path / "d", attempts=2)
    assert _leftovers(tmp_path / "d") == ["decoder.pth.part"]  # no file at the final path
    kept = (tmp_path / "d" / "decoder.pth.part").stat().st_size
    assert 0 < kept < len(data)
    _Handler.modes["decoder.pth"] = "ok"
    assert dl.download("decoder.pth", tmp_path / "d").read_bytes() == data
    assert _Handler.log[-1][1:] == (f"bytes={kept}-", 206)


def test_existing_part_is_resumed_with_range(release, tmp_path):
    data = release("decoder.pth", BLOB)
    (tmp_path / "decoder.pth.part").write_bytes(data[:123_456])
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data
    assert _Handler.log == [("decoder.pth", "bytes=123456-", 206)]


def test_complete_part_is_verified_without_transfer(release, tmp_path):
    data = release("decoder.pth", BLOB)
    (tmp_path / "decoder.pth.part").write_bytes(data)
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data
    assert [status for *_, status in _Handler.log] == [416]


def test_server_ignoring_range_restarts_cleanly(release, tmp_path):
    data = release("decoder.pth", BLOB)
    (tmp_path / "decoder.pth.part").write_bytes(b"\0" * 5000)  # wrong bytes: must not survive
    _Handler.modes["decoder.pth"] = "ignore_range"
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data
    assert _Handler.log == [("decoder.pth", "bytes=5000-", 200)]


def test_corrupt_part_is_discarded_not_resumed_forever(release, tmp_path):
    data = release("decoder.pth", BLOB)
    d = tmp_path / "d"
    d.mkdir()
    (d / "decoder.pth.part").write_bytes(b"\0" * 5000)
    with pytest.raises(DownloadError, match="sha256"):
        dl.download("decoder.pth", d)
    assert _leftovers(d) == []
    assert dl.download("decoder.pth", d).read_bytes() == data


def test_part_larger_than_the_file_starts_over(release, tmp_path):
    data = release("decoder.pth", BLOB)
    (tmp_path / "decoder.pth.part").write_bytes(b"\0" * (len(data) + 10))
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data
    assert _Handler.log[-1][1:] == (None, 200)


@pytest.mark.parametrize("mode,match", [("500", r"HTTP 500 .*try again later"),
                                        ("404", r"HTTP 404 .*not at this address")])
def test_server_errors_are_clear(release, tmp_path, mode, match):
    release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = mode
    with pytest.raises(DownloadError, match=match) as info:
        dl.download("decoder.pth", tmp_path / "d")
    assert "decoder.pth" in str(info.value)
    assert _leftovers(tmp_path / "d") == []


def test_unreachable_server_and_bad_base_url(release, tmp_path):
    release("decoder.pth", BLOB)
    with pytest.raises(DownloadError, match="cannot connect"):
        dl.download("decoder.pth", tmp_path, base_url="http://127.0.0.1:9/nothing", timeout=5)
    with pytest.raises(DownloadError, match="must be http"):
        dl.download("decoder.pth", tmp_path, base_url="file:///etc")
    with pytest.raises(AdaINInputError, match="not a released"):
        dl.download("../../etc/passwd", tmp_path)


def test_interrupt_from_progress_keeps_part(release, tmp_path):
    data = release("decoder.pth", BLOB)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dl.download("decoder.pth", tmp_path, progress=interrupt)
    assert not (tmp_path / "decoder.pth").exists() and (tmp_path / "decoder.pth.part").exists()
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data


def test_default_url_is_the_release(monkeypatch):
    monkeypatch.delenv(dl.BASE_URL_ENV, raising=False)
    assert dl.release_url("vgg_normalised.pth") == \
        "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth"
    assert dl.RELEASED["vgg_normalised.pth"].size == 80_102_481


def test_loader_lists_missing_released_file_and_fetches_it_when_run(release, fake_encoder_pth, monkeypatch):
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.nodes.loaders import AdaINDecoderLoader, AdaINEncoderLoader

    release("vgg_normalised.pth", fake_encoder_pth)
    name = "vgg19_normalised_relu4_1.safetensors"
    choices, options = AdaINEncoderLoader.INPUT_TYPES()["required"]["encoder_name"]
    assert name in choices and "fetched from the reference release" in options["tooltip"]
    assert "adain_reference_decoder.safetensors" in AdaINDecoderLoader.INPUT_TYPES()["required"]["decoder_name"][0]
    assert _Handler.log == []  # listing never downloads
    bars = []
    monkeypatch.setattr(StandaloneRuntime, "progress", lambda self, total: lambda done: bars.append((done, total)))
    encoder = AdaINEncoderLoader().load(name)[0]
    assert bars[-1] == (len(fake_encoder_pth), len(fake_encoder_pth))
    assert _leftovers(release.models) == [name]  # converted, the .pth fetched for it removed
    tensors, meta = read_tensors(release.models / name)
    assert meta["kind"] == "encoder" and meta["source_sha256"] == hashlib.sha256(fake_encoder_pth).hexdigest()
    reference = VGGEncoder()
    reference.load_state_dict(torch.load(io.BytesIO(fake_encoder_pth), weights_only=True))
    assert encoder.identity == load_encoder(release.models / name).identity
    assert all(torch.equal(tensors[k], v) for k, v in reference.state_dict().items())
    # now present: listed once, as a file; loading again makes no request
    assert AdaINEncoderLoader.INPUT_TYPES()["required"]["encoder_name"][0].count(name) == 1
    requests = len(_Handler.log)
    AdaINEncoderLoader().load(name)
    assert len(_Handler.log) == requests


def test_workflow_names_never_choose_a_url(release):
    from adain_nodes.nodes.loaders import AdaINDecoderLoader, AdaINEncoderLoader

    release("decoder.pth", _state_bytes(random_decoder().state_dict()))
    for loader, name in ((AdaINEncoderLoader, "http://127.0.0.1:1/evil.safetensors"),
                         (AdaINEncoderLoader, "adain_reference_decoder.safetensors"),  # known, but not an encoder
                         (AdaINDecoderLoader, "decoder.pth"),  # released source names are not offered either
                         (AdaINDecoderLoader, "evil.safetensors")):
        with pytest.raises(AdaINInputError, match="not found"):
            loader().load(name)
    assert _Handler.log == []


def test_local_released_source_is_converted_without_download(release):
    data = release("decoder.pth", _state_bytes(random_decoder().state_dict()))
    (release.models / "decoder.pth").write_bytes(data)
    path = dl.ensure_file("adain_reference_decoder.safetensors")
    assert path == release.models / "adain_reference_decoder.safetensors"
    assert _leftovers(release.models) == ["adain_reference_decoder.safetensors", "decoder.pth"]  # user's file kept
    assert _Handler.log == []
    (release.models / "decoder.pth").write_bytes(data[:-1] + b"x")
    path.unlink()
    with pytest.raises(DownloadError, match="is not the released decoder.pth"):
        dl.ensure_file("adain_reference_decoder.safetensors")


def test_cli_download_with_text_progress(release, tmp_path, capsys):
    data = release("decoder.pth", _state_bytes(random_decoder().state_dict()))
    assert cli_main(["download", "adain_reference_decoder.safetensors", "--dir", str(tmp_path / "w"),
                     "--keep-pth"]) == 0
    out, err = capsys.readouterr()
    assert "adain_reference_decoder.safetensors:" in out and "(100%)" in err
    assert _leftovers(tmp_path / "w") == ["adain_reference_decoder.safetensors", "decoder.pth"]
    assert (tmp_path / "w" / "decoder.pth").read_bytes() == data
    _Handler.modes["vgg_normalised.pth"] = "404"
    assert cli_main(["download", "vgg_normalised.pth", "nonsense.bin", "--dir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "'nonsense.bin' is not a file the pack can download" in err


def test_nothing_is_fetched_at_import(tmp_path):
    """Importing the pack and listing the loaders' choices opens no connection."""
    code = ("import socket\n"
            "def refuse(*a, **k): raise SystemExit('network used at import')\n"
            "socket.socket.connect = refuse; socket.create_connection = refuse\n"
            "import adain_nodes, adain_nodes.nodes, adain_nodes.download, adain_nodes.cli\n"
            "from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N\n"
            "print(N['AdaINEncoderLoader'].INPUT_TYPES()['required']['encoder_name'][0])\n")
    env = {**os.environ, "ADAIN_MODELS_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "vgg19_normalised_relu4_1.safetensors" in done.stdout


# --- weight files a download (or a user) can leave behind; the rest is in test_weights.py -------------------

def test_error_page_saved_as_weights_is_refused(tmp_path):
    """A proxy or a wrong URL gives an HTML page; loading it must not be a pickle traceback."""
    from adain_nodes.errors import WeightFileError
    from adain_nodes.models.weights import load_decoder

    (tmp_path / "decoder.pth").write_text("<!DOCTYPE html><html><body>Not Found</body></html>")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "huge_header.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    torch.save({"0.weight": 3, "note": "not a tensor"}, tmp_path / "ints.pth")
    for name in ("decoder.pth", "empty.safetensors", "empty.pth", "huge_header.safetensors", "ints.pth"):
        with pytest.raises(WeightFileError, match=name):
            load_decoder(tmp_path / name)


def test_float64_weights_beyond_float32_range_are_refused(tmp_path):
    """Finite as float64 but inf once loaded as float32: used to load and give NaN images later."""
    from adain_nodes.errors import WeightFileError
    from adain_nodes.models.weights import load_decoder, save_safetensors

    state = {key: value.double() for key, value in random_decoder().state_dict().items()}
    save_safetensors(state, tmp_path / "f64.safetensors", {})
    assert load_decoder(tmp_path / "f64.safetensors")  # float64 itself is fine
    state["1.weight"][0, 0, 0, 0] = 1e39
    save_safetensors(state, tmp_path / "f64.safetensors", {})
    with pytest.raises(WeightFileError, match=r"1\.weight.*infinite"):
        load_decoder(tmp_path / "f64.safetensors")


@pytest.fixture
def fast_deadline(monkeypatch):
    """A rate limit tests can reach in a second: 20 kB/s over a second."""
    monkeypatch.setattr(http_stream, "MIN_RATE", 20_000)
    monkeypatch.setattr(http_stream, "RATE_WINDOW", 1.0)


@pytest.mark.parametrize("mode", ["trickle", "silent", "slow_headers"])
def test_a_slow_server_is_stopped_by_the_rate_limit_with_progress_meanwhile(release, tmp_path, fast_deadline, mode):
    data = release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = mode
    reports = []
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"below the minimum of 20 KiB/s.*run the download again to resume"):
        dl.download("decoder.pth", tmp_path, progress=lambda done, total: reports.append(done))
    assert time.monotonic() - started < SLOW_SERVER_SECONDS / 2
    assert len(reports) >= 2  # reported (and so interruptible) while waiting for bytes
    kept = (tmp_path / "decoder.pth.part").stat().st_size if mode == "trickle" else 0
    assert kept >= max(reports) and (kept > 0) == (mode == "trickle")
    _Handler.modes["decoder.pth"] = "ok"
    assert dl.download("decoder.pth", tmp_path).read_bytes() == data  # resumes from what was kept


def test_interrupt_is_honoured_while_the_server_is_silent(release, tmp_path):
    release("decoder.pth", BLOB)
    _Handler.modes["decoder.pth"] = "silent"
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        dl.download("decoder.pth", tmp_path, progress=interrupt)
    assert time.monotonic() - started < SLOW_SERVER_SECONDS / 2
