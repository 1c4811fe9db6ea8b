"""Call the GUI's handlers over HTTP the way any program could, without the page."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request


def request(url: str, *, data: bytes | None = None, headers: dict | None = None,
            method: str | None = None, timeout: float = 30):
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class GradioAPI:
    """One session of the app's API: handlers found by their trigger's elem_id."""

    def __init__(self, base: str, token: str | None):
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = secrets.token_hex(8)
        status, _, body = request(self.base + "/config", headers=self.headers)
        assert status == 200, (status, body[:200])
        self.config = json.loads(body)
        self.components = {c["id"]: c for c in self.config["components"]}

    def _id(self, elem_id: str) -> int:
        return next(i for i, c in self.components.items() if c["props"].get("elem_id") == elem_id)

    def dependency(self, elem_id: str, event: str) -> tuple[int, dict]:
        target = self._id(elem_id)
        for index, dep in enumerate(self.config["dependencies"]):
            if [target, event] in [list(t) for t in dep["targets"]]:
                return index, dep
        raise KeyError(f"no {event} handler on #{elem_id}")

    def call(self, elem_id: str, event: str = "click", **values) -> list:
        """Run the handler with the page's initial values, `values` (by elem_id) replacing some;
        returns its outputs (the last ones, for a generator)."""
        index, dep = self.dependency(elem_id, event)
        return self._run(index, dep, self._id(elem_id), values)

    def tick(self, **values) -> list:
        """What the page's timer asks for: the Runs tab's refresh. It also tells the server, for
        this session, the run list that its dropdown may then be given."""
        for index, dep in enumerate(self.config["dependencies"]):
            for target, event in dep["targets"]:
                if event == "tick":
                    return self._run(index, dep, target, values)
        raise KeyError("the page has no timer")

    def _run(self, index: int, dep: dict, trigger: int, values: dict) -> list:
        by_elem = {self._id(k): v for k, v in values.items()}
        data = [by_elem.get(i, self.components[i]["props"].get("value")) for i in dep["inputs"]]
        body = json.dumps({"data": data, "fn_index": index, "session_hash": self.session,
                           "trigger_id": trigger, "event_data": None}).encode()
        status, _, answer = request(f"{self.base}/gradio_api/queue/join", data=body,
                                    headers={**self.headers, "Content-Type": "application/json"})
        assert status == 200, (status, answer[:300])
        return self._result()

    def _result(self) -> list:
        url = f"{self.base}/gradio_api/queue/data?session_hash={self.session}"
        req = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(req, timeout=120) as stream:
            for raw in stream:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    output = message.get("output", {})
                    assert message.get("success", True), output
                    return output.get("data", [])
        raise AssertionError("the stream ended without a result")
