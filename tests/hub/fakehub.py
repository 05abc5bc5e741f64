"""A Hub-protocol test server on 127.0.0.1: enough of the API for ``HfApi.create_repo`` and ``upload_folder``
(repo creation, branch, preupload, the LFS batch with basic transfer + PUT upload, ndjson commit).
No xet: the tests set ``huggingface_hub.constants.HF_HUB_DISABLE_XET`` so the client takes the LFS path."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "files": {rev: {path: bytes}}}
        self.lfs: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.tokens: set[str] = set()
        self.refuse = False  # answer 403 to repo creation, like a token without write access
        self.validated = 0  # README.md metadata validations answered
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        n = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if n == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(n)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _auth(self) -> bool:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    self._send(401, {"error": "Invalid credentials"})
                    return False
                hub.tokens.add(auth[7:])
                return True

            def do_PUT(self):
                hub.calls.append(f"PUT {self.path}")
                m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", self.path)
                body = self._body()
                if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                    return self._send(400, {"error": "bad lfs upload"})
                hub.lfs[m.group(1)] = body
                self._send(200, {})

            def do_POST(self):
                hub.calls.append(f"POST {self.path.split('?')[0]}")
                body = self._body()
                if not self._auth():
                    return
                path = self.path.split("?")[0]
                base = f"http://{self.headers['Host']}"
                if path == "/api/validate-yaml":
                    from huggingface_hub import ModelCard, ModelCardData

                    try:
                        card = ModelCard(json.loads(body)["content"], ignore_metadata_errors=False)
                        ModelCardData(**card.data.to_dict())
                    except Exception as exc:  # the real Hub answers 400 with the reason
                        return self._send(400, {"error": str(exc)})
                    hub.validated += 1
                    return self._send(200, {"warnings": []})
                if path == "/api/repos/create":
                    if hub.refuse:
                        return self._send(
                            403, {"error": "You don't have the rights to create a model under this namespace"}
                        )
                    p = json.loads(body)
                    rid = f"{p['organization']}/{p['name']}"
                    hub.repos.setdefault(rid, {"private": p.get("visibility") == "private", "files": {"main": {}}})
                    return self._send(200, {"url": f"{base}/{rid}", "name": rid})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/(.+)", path):
                    repo = hub.repos[m.group(1)]
                    repo["files"].setdefault(m.group(2), dict(repo["files"]["main"]))
                    return self._send(200, {})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path):
                    files = json.loads(body)["files"]
                    modes = [
                        {
                            "path": f["path"],
                            "shouldIgnore": False,
                            "uploadMode": "lfs"
                            if f["path"].endswith(".safetensors") or f["size"] > 1 << 20
                            else "regular",
                        }
                        for f in files
                    ]
                    return self._send(200, {"files": modes})
                if m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                    objs = json.loads(body)["objects"]
                    out = [
                        {
                            "oid": o["oid"],
                            "size": o["size"],
                            "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"}},
                        }
                        for o in objs
                    ]
                    return self._send(200, {"transfer": "basic", "objects": out})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path):
                    rid, rev = m.group(1), m.group(2)
                    if rid not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    tree = hub.repos[rid]["files"].setdefault(rev, {})
                    for line in body.splitlines():
                        item = json.loads(line)
                        v = item["value"]
                        if item["key"] == "file":
                            tree[v["path"]] = base64.b64decode(v["content"])
                        elif item["key"] == "lfsFile":
                            if v["oid"] not in hub.lfs:
                                return self._send(400, {"error": f"lfs object {v['oid']} missing"})
                            tree[v["path"]] = hub.lfs[v["oid"]]
                    oid = hashlib.sha1(body).hexdigest()
                    return self._send(200, {"commitUrl": f"{base}/{rid}/commit/{oid}", "commitOid": oid})
                self._send(404, {"error": f"fakehub: no route {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
