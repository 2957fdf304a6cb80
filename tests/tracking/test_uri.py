"""Tracking URIs are printed without their secrets, whatever their shape."""

from __future__ import annotations

import pytest

from hpo_cls.tracking.uri import redact_text, redact_uri

SECRET = "S3CRET-pw"


@pytest.mark.parametrize(
    ("uri", "kept"),
    [
        (f"postgresql://u:{SECRET}@db.example:5432/mlflow", "postgresql://u:***@db.example:5432/mlflow"),
        (f"http://user:{SECRET}@host", "http://user:***@host"),
        (f"http://user:{SECRET}@host:99999/", "http://user:***@host:99999/"),  # out-of-range port
        (f"http://u:{SECRET}@[::1", "http://u:***@[::1"),  # unclosed IPv6 bracket
        (f"https://h/?token={SECRET}", "https://h/?token=***"),
        (f"https://h/api?x=1&password={SECRET}&y=2", "https://h/api?x=1&password=***&y=2"),
        (f"https://h/?api_key={SECRET}", "https://h/?api_key=***"),
        (f"http://u:pa@{SECRET}@host/", "http://u:***@host/"),  # an unencoded '@' in the password
    ],
    ids=["postgres", "http-basic", "bad-port", "bad-ipv6", "token-query", "password-query", "api-key",
         "at-in-password"],
)
def test_redact_uri_hides_every_secret_and_never_raises(uri, kept):
    assert redact_uri(uri) == kept
    assert SECRET not in redact_uri(uri)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "http://127.0.0.1:5000", "http://user@host/x?run=1"])
def test_redact_uri_leaves_uris_without_secrets_alone(uri):
    assert redact_uri(uri) == uri


def test_redact_text_finds_uris_inside_a_message():
    message = f"API request to http://u:{SECRET}@h:1/api/2.0/x failed; see https://h/?token={SECRET}"
    assert SECRET not in redact_text(message)


def test_unreachable_reason_names_a_closed_port_quickly():
    import socket
    import time

    from hpo_cls.tracking.uri import unreachable_reason

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    start = time.monotonic()
    reason = unreachable_reason(f"http://u:{SECRET}@127.0.0.1:{port}")
    assert reason and str(port) in reason and SECRET not in reason
    assert time.monotonic() - start < 10
    assert unreachable_reason("sqlite:///mlflow.db") is None
    assert "not a valid URI" in unreachable_reason("https://h:notaport/")


# issue 36, class 2: a password with an unencoded / # @ or % makes the URI unparsable; redaction must not care
PIECES = ("Kpieceone", "Kpiecetwo")
UNPARSABLE = [f"postgresql://user:{PIECES[0]}/{PIECES[1]}@host/db", f"http://user:{PIECES[0]}#{PIECES[1]}@host",
              f"mysql://user:{PIECES[0]}@{PIECES[1]}@host:3306/db", f"http://user:{PIECES[0]}%{PIECES[1]}@host:1",
              f"https://user:{PIECES[0]}/#@%{PIECES[1]}@host:99999/x"]


@pytest.mark.parametrize("uri", UNPARSABLE, ids=["slash", "hash", "at", "percent", "all"])
def test_redaction_does_not_depend_on_parsing(uri):
    for text in (uri, f"error: could not open '{uri}': bad port", f"({uri})"):
        redacted = redact_text(text)
        assert not any(piece in redacted for piece in PIECES), redacted
        assert "user:***@" in redacted


@pytest.mark.parametrize("uri", UNPARSABLE, ids=["slash", "hash", "at", "percent", "all"])
def test_unreachable_reason_quotes_no_piece_of_the_password(uri):
    from hpo_cls.tracking.uri import unreachable_reason

    reason = unreachable_reason(uri, timeout_s=1) or ""
    assert not any(piece in reason for piece in PIECES), reason


def test_log_records_are_redacted(caplog):
    import logging

    from hpo_cls.cli import redact_log_records

    redact_log_records()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("mlflow.store").warning("cannot open %s", UNPARSABLE[0])
    assert "user:***@" in caplog.text and not any(piece in caplog.text for piece in PIECES)
