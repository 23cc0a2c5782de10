"""Admin-side safety (issue 11): CLI listings never print a peer's control characters raw.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_admin.py
"""
import base64
import os
import re
import socket
import ssl
import time

import pytest

from conftest import postino, start_server, finish_server, wait_until
from smtphelp import SMTP

# a login name that would forge a whole line of `postino diag ip` output, and an ANSI escape
FORGED = "2026-01-01 00:00:00  logged in  IMAP (SSL) port 993 with TLS from 10.9.9.9"
EVIL = "evil\r\n  " + FORGED + "\x1b[2J\x07"


@pytest.fixture(scope="module")
def srv(workdir, pki):
    s = start_server(os.path.join(workdir, "admin"), pki)
    yield s
    finish_server(s)


def _ctx(srv):
    ctx = srv.ssl_context()
    ctx.check_hostname = False
    return ctx


def _imap_literal_login(srv, user):
    """LOGIN with the user name as a literal: CR/LF and ESC reach the server untouched."""
    raw = user.encode()
    with socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=15) as s0:
        with _ctx(srv).wrap_socket(s0) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"a1 LOGIN {%d}\r\n" % len(raw))
            assert f.readline().startswith(b"+"), "no continuation for the literal"
            s.sendall(raw + b" wrongpass\r\n")
            line = f.readline()
            assert line.startswith(b"a1 NO"), line


def _pop3_auth_plain(srv, user):
    blob = base64.b64encode(b"\0" + user.encode() + b"\0wrongpass")
    with socket.create_connection(("127.0.0.1", srv.ports["pop3s"]), timeout=15) as s0:
        with _ctx(srv).wrap_socket(s0) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"AUTH PLAIN " + blob + b"\r\n")
            line = f.readline()
            assert line.startswith(b"-ERR"), line


def _smtp_auth_plain(srv, user):
    c = SMTP(srv.submission_port)
    c.starttls(context=srv.ssl_context())
    c.ehlo("client.example")
    blob = base64.b64encode(b"\0" + user.encode() + b"\0wrongpass").decode()
    code, msg = c.docmd("AUTH", "PLAIN " + blob)
    assert code == 535, (code, msg)
    c.close()


def _assert_clean(out):
    bad = [c for c in out if (ord(c) < 0x20 and c != "\n") or ord(c) == 0x7f]
    assert not bad, "raw control characters in the listing: %r" % out
    for line in out.splitlines():
        assert not line.lstrip().startswith("2026-01-01"), "a forged line: %r" % out


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_login_name_with_control_chars_is_escaped_in_diag(srv, proto):
    user = EVIL.replace("evil", "evil-" + proto)
    {"imap": _imap_literal_login, "pop3": _pop3_auth_plain, "smtp": _smtp_auth_plain}[proto](
        srv, user)
    out = {}

    def seen():
        out["ip"] = postino("diag", "ip", "127.0.0.1", "--data", srv.data).stdout
        return "evil-" + proto in out["ip"]
    wait_until(seen, 10, 0.1, "the %s event in diag ip" % proto)
    _assert_clean(out["ip"])
    assert re.search(r"evil-%s\\x0d\\x0a" % proto, out["ip"]), out["ip"]
    # looked up by that (lower-cased) name, the account view is clean too
    ud = postino("user", "diag", user.lower(), "--data", srv.data).stdout
    assert "evil-" + proto in ud, ud
    _assert_clean(ud)
