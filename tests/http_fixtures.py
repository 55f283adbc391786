"""A loopback HTTP server for the tests: static files with byte ranges, folder index pages."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte-range support, as nginx or S3 website hosting have.

    Python's own handler ignores ``Range`` and sends whole files; Zarr reads a
    shard's index and chunks by byte range, so a real publishing server must
    honour it.
    """

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().do_GET()
        size = path.stat().st_size
        spec = header.strip().removeprefix("bytes=")
        first, _, last = spec.partition("-")
        if not first:  # suffix range: the last N bytes
            start, stop = max(0, size - int(last)), size
        else:
            start, stop = int(first), (min(int(last) + 1, size) if last else size)
        if start >= size or start >= stop:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        with path.open("rb") as handle:
            handle.seek(start)
            body = handle.read(stop - start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_folder(folder: Path, handler_class: type = None) -> Iterator[str]:
    """Serve ``folder`` read-only over HTTP on loopback (with ``handler_class``, by default
    :class:`RangeRequestHandler`); yields the base URL."""
    handler = functools.partial(handler_class or RangeRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
