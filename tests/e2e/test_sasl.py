"""SASL PLAIN / LOGIN decoding (issue 11, shared src/lib-mail/sasl.c): a response with bytes
hidden behind a NUL is refused, not cut at the NUL. The old decoder handed on
"password NUL junk" as "password", so the junk was ignored and the login succeeded."""
import base64
import imaplib

import pytest

from conftest import USERS
from smtphelp import SMTP

ALICE = "alice@example.test"


def b64(raw):
    return base64.b64encode(raw).decode()


@pytest.fixture
def ctx(server):
    return server.ssl_context()


def smtp_auth(server, ctx, *lines):
    """AUTH on 587 after STARTTLS; the final (code, text)."""
    with SMTP(server.submission_port) as s:
        s.starttls(context=ctx)
        s.ehlo()
        code, text = s.docmd("AUTH", lines[0])
        for line in lines[1:]:
            assert code == 334, (code, text)
            code, text = s.docmd(line)
        return code, text


PW = USERS[ALICE].encode()


def test_smtp_plain_valid_still_works(server, ctx):
    assert smtp_auth(server, ctx, "PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PW))[0] == 235


@pytest.mark.parametrize("raw", [
    b"\0" + ALICE.encode() + b"\0" + PW + b"\0junk",
    b"\0" + ALICE.encode() + b"\0" + PW + b"\0",
])
def test_smtp_plain_nul_after_password_refused(server, ctx, raw):
    code, text = smtp_auth(server, ctx, "PLAIN " + b64(raw))
    assert code == 501 and text.startswith(b"5.5.2"), (code, text)


def test_smtp_login_nul_in_user_refused(server, ctx):
    code, text = smtp_auth(server, ctx, "LOGIN", b64(ALICE.encode() + b"\0junk"))
    assert code == 501 and text.startswith(b"5.5.2"), (code, text)


def test_smtp_login_valid_still_works(server, ctx):
    assert smtp_auth(server, ctx, "LOGIN " + b64(ALICE.encode()), b64(PW))[0] == 235


def imap_auth(server, ctx, mech, answers):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=10)
    it = iter(answers)
    try:
        m.authenticate(mech, lambda _challenge: next(it))
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            m.logout()
        except Exception:
            pass


def test_imap_plain_nul_after_password_refused(server, ctx):
    assert imap_auth(server, ctx, "PLAIN", [b"\0" + ALICE.encode() + b"\0" + PW]) == "OK"
    r = imap_auth(server, ctx, "PLAIN", [b"\0" + ALICE.encode() + b"\0" + PW + b"\0junk"])
    assert r != "OK" and "AUTHENTICATIONFAILED" in r, r


def test_imap_login_nul_in_user_refused(server, ctx):
    assert imap_auth(server, ctx, "LOGIN", [ALICE.encode(), PW]) == "OK"
    r = imap_auth(server, ctx, "LOGIN", [ALICE.encode() + b"\0junk", PW])
    assert r != "OK" and "AUTHENTICATIONFAILED" in r, r
