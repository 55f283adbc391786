"""A published store read over plain HTTP (read-only, consolidated metadata, range requests)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import threading

import numpy as np
import pytest

from pipeline.errors import StoreError
from stores import create_store, open_store
from tests.stores.test_store import LABELS, build, columns, small_config


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges (shards are read by range), like any object store or CDN."""

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        with open(path, "rb") as f:
            data = f.read()
        size = len(data)
        match = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match:
            first, last = match.groups()
            start, end = (size - int(last), size - 1) if first == "" else (int(first), int(last) if last else size - 1)
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_read_over_http(http_root):
    pytest.importorskip("aiohttp")
    folder, base = http_root
    build(folder / "s.zarr", small_config())
    local = open_store(folder / "s.zarr")
    remote = open_store(f"{base}/s.zarr")
    assert remote.fingerprint == local.fingerprint and remote.clips.equals(local.clips)
    np.testing.assert_array_equal(remote.read_clip(2, "time_stretch")["mel"], local.read_clip(2, "time_stretch")["mel"])
    assert remote.read_shard(1)["cens"].tobytes() == local.read_shard(1)["cens"].tobytes()
    assert remote.nbytes_stored == -1  # HTTP cannot list; info says "unknown"
    with pytest.raises(StoreError, match="read-only"):
        create_store(f"{base}/new.zarr", config=small_config(), clips=columns(3), labels=LABELS,
                     aug_params={}, dataset={})
