"""Local fakes of web translation and chat APIs (127.0.0.1 only) for testing HTTP backends."""

from __future__ import annotations

import html
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class _Handler(BaseHTTPRequestHandler):
    replies: dict = {}
    requests: list = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((url.path, q))
        if url.path.endswith("/m"):  # Google's mobile page: the result sits in <div class="t0">
            text = self.replies.get(q.get("q", ""), f"[{q.get('tl')}] {q.get('q', '')}")
            body = f'<html><body><div class="t0">{html.escape(text)}</div></body></html>'.encode()
            ctype = "text/html; charset=utf-8"
        elif url.path.endswith("/get"):  # MyMemory
            text = self.replies.get(q.get("q", ""), f"[{q.get('langpair')}] {q.get('q', '')}")
            body = json.dumps({"responseData": {"translatedText": text}, "matches": []}).encode()
            ctype = "application/json"
        elif url.path.endswith("/translate"):  # DeepL v2
            text = self.replies.get(q.get("text", ""), f"[{q.get('target_lang')}] {q.get('text', '')}")
            body = json.dumps({"translations": [{"text": text}]}).encode()
            ctype = "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


    def do_POST(self):  # noqa: N802 — LibreTranslate: POST /translate, parameters in the query
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            q.update({k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()})
        self.requests.append((url.path, q))
        if not url.path.endswith("/translate"):
            self.send_error(404)
            return
        text = self.replies.get(q.get("q", ""), f"[{q.get('target')}] {q.get('q', '')}")
        body = json.dumps({"translatedText": text}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def fake_translation_server(replies: dict | None = None):
    handler = type("Handler", (_Handler,), {"replies": replies or {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fake_chat_server(answer):
    """OpenAI-style /v1/chat/completions on 127.0.0.1; ``answer(messages, n)`` gives the content."""
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            content = answer(body["messages"], len(calls))
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", calls
    finally:
        server.shutdown()
        server.server_close()
