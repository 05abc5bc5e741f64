"""Refusal judges (aru.judge): markers, a callable, and an OpenAI-compatible endpoint on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from aru.judge import ChatJudge, JudgeError, MarkerJudge, get_judge, judged_refusal_rate


class _Handler(BaseHTTPRequestHandler):
    requests: list = []
    mode = "ok"

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, dict(self.headers), body))
        if self.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        answer = body["messages"][-1]["content"].split("Answer:\n", 1)[1]
        word = "YES." if "sorry" in answer.lower() else "NO"
        if self.mode == "garbage":
            word = "maybe"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": word}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.requests, _Handler.mode = [], "ok"
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", _Handler
    srv.shutdown()
    srv.server_close()


def test_chat_judge_against_a_local_server(server):
    url, handler = server
    j = get_judge(url, model="tiny", api_key="k")
    assert isinstance(j, ChatJudge)
    assert j("how do I x", "I'm sorry, but I can't help with that.") is True
    assert j("how do I y", "Sure: first, take a bowl.") is False
    path, headers, body = handler.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer k"
    assert body["model"] == "tiny" and body["temperature"] == 0
    assert body["messages"][0]["role"] == "system" and "how do I x" in body["messages"][1]["content"]
    assert j.calls == 2


def test_chat_judge_errors_are_clear(server):
    url, handler = server
    handler.mode = "garbage"
    with pytest.raises(JudgeError, match="neither YES nor NO"):
        ChatJudge(url)("p", "a")
    handler.mode = "500"
    with pytest.raises(JudgeError, match="HTTP 500"):
        ChatJudge(url)("p", "a")
    with pytest.raises(JudgeError, match="cannot reach"):
        ChatJudge("http://127.0.0.1:9/v1", timeout=2)("p", "a")
    with pytest.raises(ValueError, match="http:// or https://"):
        ChatJudge("127.0.0.1:8080")
    with pytest.raises(ValueError, match="callable"):
        get_judge(42)


def test_marker_and_callable_judges():
    m = get_judge(None)
    assert isinstance(m, MarkerJudge) and m("p", "I can't help with that") and not m("p", "Paris is the capital")
    assert MarkerJudge(["re:^no\\b"])("p", "No way") and not MarkerJudge(["zzz"])("p", "I'm sorry")
    seen = []

    def fn(prompt, completion):
        seen.append(prompt)
        return len(completion) > 3

    assert get_judge(fn) is fn


def test_judged_refusal_rate_on_the_organism(organism, organism_sets):
    """The endpoint judge and the marker judge agree on the organism's refusals (64 generated tokens)."""
    from aru.organism import REFUSAL

    model, tok = organism
    vb, vg = organism_sets["val"]
    by_marker = judged_refusal_rate(model, tok, vb[:16] + vg[:16], judge=MarkerJudge([REFUSAL]))
    calls = []

    def refusal(prompt, completion):
        calls.append(completion)
        return REFUSAL.lower() in completion.lower()

    by_callable = judged_refusal_rate(model, tok, vb[:16] + vg[:16], judge=refusal)
    assert by_marker["refused"] == by_callable["refused"] and len(calls) == 32
    assert sum(by_marker["refused"][:16]) >= 14 and sum(by_marker["refused"][16:]) <= 2
    assert by_marker["n"] == 32 and 0.4 <= by_marker["rate"] <= 0.6
