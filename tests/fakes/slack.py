"""A fake Slack incoming webhook on 127.0.0.1 (records posted messages; can be told to fail)."""

from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply


class FakeSlack(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.status = 200

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/XXXX"

    def handle(self, request: Recorded) -> Reply:
        if request.method == "POST" and request.path.startswith("/services/"):
            return Reply(self.status, "ok" if self.status == 200 else "invalid_payload")
        return Reply(404, "no_service")

    def texts(self) -> list[str]:
        return [r.json()["text"] for r in self.requests if r.path.startswith("/services/")]
