"""A local HTTP server that speaks enough of the Hugging Face Hub's file protocol for huggingface_hub.

``HEAD``/``GET /{owner}/{repo}/resolve/{revision}/{filename}`` with the headers the client reads
(``X-Repo-Commit``, ``ETag`` = the sha256 of the file, ``Content-Length``, ranges for resumed downloads).
Revisions are 40-hex commit shas (served exactly: an unknown sha is ``RevisionNotFound``, never a branch)
or branch names. Spaces and datasets are served under ``/spaces/`` and ``/datasets/`` as on the Hub
(``commit(..., repo_type="space")``). Knobs for failure tests: ``tamper`` (serve altered
bytes under the original ETag), ``truncate_once`` (close the connection half-way through the next GET of
a file), ``delay`` (seconds to wait before sending a body). Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeHub:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}
        self.branches: dict[str, dict[str, str]] = {}
        self.tamper: set[str] = set()
        self.truncate_once: set[str] = set()
        self.delay = 0.0
        self.requests: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                return

            def do_HEAD(self) -> None:  # noqa: N802
                hub._serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo: str, sha: str, files: dict[str, bytes], branch: str = "main",
               repo_type: str = "model") -> str:
        if repo_type != "model":
            repo = f"{repo_type}s/{repo}"
        self.commits.setdefault(repo, {})[sha] = dict(files)
        self.branches.setdefault(repo, {})[branch] = sha
        return sha

    def commit_folder(self, repo: str, sha: str, folder: Path) -> str:
        return self.commit(repo, sha, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})

    def count(self, method: str, filename: str) -> int:
        with self.lock:
            return sum(n for (m, path), n in self.requests.items() if m == method and path.endswith("/" + filename))

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        method = "GET" if body else "HEAD"
        with self.lock:
            self.requests[(method, h.path)] += 1
        parts = [urllib.parse.unquote(p) for p in h.path.split("?")[0].strip("/").split("/")]
        kind, parts = (parts[0], parts[1:]) if parts and parts[0] in ("spaces", "datasets") else ("", parts)
        if len(parts) < 5 or parts[2] != "resolve":
            h.send_error(404, "not found")
            return
        repo, revision, filename = "/".join(([kind] if kind else []) + parts[:2]), parts[3], "/".join(parts[4:])
        commits = self.commits.get(repo)
        if commits is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "RepoNotFound")
            h.end_headers()
            return
        exact = len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
        sha = revision if revision in commits else None if exact else self.branches.get(repo, {}).get(revision)
        if sha is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "RevisionNotFound")
            h.end_headers()
            return
        data = commits[sha].get(filename)
        if data is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Repo-Commit", sha)
            h.end_headers()
            return
        etag = hashlib.sha256(data).hexdigest()
        if filename in self.tamper:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = h.headers.get("Range")
        if body and rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        payload = data[start:]
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", sha)
        h.send_header("ETag", f'"{etag}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(payload)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        if self.delay:
            time.sleep(self.delay)
        if filename in self.truncate_once:
            self.truncate_once.discard(filename)
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(payload)
