"""The sweep's pre-flight check of an http(s) tracking URI: credentials are sent, not taken for the host, and
a malformed URI is a problem line, never an exception."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from hpo_cls.sweep.preflight import check_tracking_uri


@pytest.fixture
def health_server():
    """A local HTTP server answering MLflow's ``/health``; records the Authorization headers it got."""
    seen: list[str | None] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_a_live_server_with_credentials_is_reachable(health_server):
    port, seen = health_server
    assert check_tracking_uri(f"http://alice:pw%40x@127.0.0.1:{port}") is None
    assert seen == ["Basic " + base64.b64encode(b"alice:pw@x").decode()], "credentials go in the header"


@pytest.mark.parametrize(
    "uri", ["https://h:notaport/", "http://u:p@[::1", "http://u:p@127.0.0.1:99999", "http://"],
    ids=["non-numeric-port", "unclosed-ipv6", "port-out-of-range", "no-host"],
)
def test_a_malformed_uri_is_a_problem_line(uri):
    problem = check_tracking_uri(uri)
    assert problem is not None and problem.startswith("tracking.uri:")
    assert ":p@" not in problem, "the password is not printed"
