"""Hardened protocol edges (issue 11 item 5): a web browser talking to a mail port (cross-protocol
attacks, ALPACA) gets one error line and the connection is closed at once; TLS on mail ports
refuses ALPN http/1.1; every failed login is answered after at least login_failure_delay (2 s by
default) without stalling other sessions; the third failed login on one connection closes it.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_login_edges.py
"""
import base64
import os
import select
import socket
import ssl
import time

import pytest

from conftest import HOST, USERS, start_server, finish_server

ALICE = "alice@example.test"
HTTP_REQUEST = (b"GET / HTTP/1.1\r\nHost: mail.example.test\r\nUser-Agent: Mozilla/5.0\r\n"
                b"Accept: */*\r\n\r\n")
ERROR_PREFIX = {"smtp": b"554 5.7.0 ", "imap": b"* BYE ", "pop3": b"-ERR "}
PROTO = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp", "imap": "imap",
         "imaps": "imap", "pop3": "pop3", "pop3s": "pop3"}
IMPLICIT_TLS = ("submissions", "imaps", "pop3s")
PROTO = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp", "imap": "imap",
         "imaps": "imap", "pop3": "pop3", "pop3s": "pop3"}
GREETING = {"smtp": b"220 ", "imap": b"* OK ", "pop3": b"+OK "}     # the line's start
PROMPT = {"smtp": b"334 ", "imap": b"+ ", "pop3": b"+ "}            # a SASL continuation
STARTTLS_OK = {"smtp": b"220 ", "imap": b"s1 OK ", "pop3": b"+OK "}


@pytest.fixture(scope="module")
def srv(workdir, pki):
    s = start_server(os.path.join(workdir, "login-edges"), pki)
    yield s
    finish_server(s)


@pytest.fixture(scope="module")
def slow(workdir, pki):
    """The shipped delays (login_failure_delay 2 s, login_delay_max 15 s), one worker, so a
    session that waits out a failure shares its event loop with every other session."""
    s = start_server(os.path.join(workdir, "login-edges-default"), pki, fast_logins=False,
                     extra_conf="workers = 1\n")
    yield s
    finish_server(s)


class Line:
    """A raw line-oriented client (plaintext or TLS)."""

    def __init__(self, srv, listener, alpn=None, source="127.0.0.1"):
        self.proto = PROTO[listener]
        self.sock = socket.create_connection(("127.0.0.1", srv.ports[listener]), timeout=10,
                                             source_address=(source, 0))
        if listener in IMPLICIT_TLS:
            ctx = srv.ssl_context()
            if alpn:
                ctx.set_alpn_protocols(alpn)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=HOST)
        self.buf = b""

    def line(self, timeout=10):
        """The next line (CRLF stripped), or None at EOF."""
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode() + b"\r\n")

    def rest(self, timeout=5):
        """Every line until the server closes; fails if it keeps the connection open."""
        out = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, "connection still open after %ss; got %r" % (timeout, out)
            try:
                line = self.line(left)
            except (ConnectionResetError, BrokenPipeError):
                return out
            except socket.timeout:
                raise AssertionError("connection still open after %ss; got %r" % (timeout, out))
            if line is None:
                return out
            out.append(line)

    def pending(self):
        """Has the server said anything we have not read?"""
        if b"\r\n" in self.buf:
            return True
        if not isinstance(self.sock, ssl.SSLSocket):
            return bool(select.select([self.sock], [], [], 0)[0])
        # a readable TLS socket may only hold a session ticket: ask for application data
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(4096)
        except ssl.SSLWantReadError:
            return False
        finally:
            self.sock.settimeout(10)
        self.buf += data
        return True

    def close(self):
        self.sock.close()


def greeted(srv, listener, alpn=None, source="127.0.0.1"):
    c = Line(srv, listener, alpn, source)
    g = c.line()
    while g and g.startswith(b"220-"):   # port 25 pauses before its last greeting line
        g = c.line()
    assert g and g.startswith(GREETING[c.proto]), (listener, g)
    return c


# ---------------------------------------------------------------- HTTP on mail ports

@pytest.mark.parametrize("listener", ["smtp", "submission", "submissions", "imap", "imaps",
                                      "pop3", "pop3s"])
def test_http_request_gets_one_error_line_and_close(srv, listener):
    c = greeted(srv, listener)
    # a command behind the request must never run: NOOP would be answered if it did
    c.send(HTTP_REQUEST + b"NOOP\r\n")
    t0 = time.monotonic()
    lines = c.rest()
    closed_after = time.monotonic() - t0
    c.close()
    assert len(lines) == 1, lines
    assert lines[0].startswith(ERROR_PREFIX[PROTO[listener]]), lines
    assert b"not a web server" in lines[0] and b"HTTP" in lines[0], lines
    assert closed_after < 5
    assert b"event=http-on-mail-port" in srv.log_bytes()


@pytest.mark.parametrize("listener", ["submission", "imap", "pop3"])
def test_http_request_sent_before_the_greeting(srv, listener):
    """A browser speaks first; on ports that wait for a TLS ClientHello the greeting comes,
    then the error line."""
    c = Line(srv, listener)
    c.send(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nQUIT\r\nNOOP\r\n")
    lines = c.rest()
    c.close()
    assert len(lines) == 2, lines
    assert lines[1].startswith(ERROR_PREFIX[PROTO[listener]]), lines


@pytest.mark.parametrize("listener", ["smtp", "imap", "pop3"])
def test_http_header_line_before_a_command_closes(srv, listener):
    """A request line we do not know (a proxy's, a smuggled one) is an ordinary bad command,
    but the header lines behind it give the browser away."""
    c = greeted(srv, listener)
    c.send(b"XGET /x HTTP/1.1\r\nHost: mail.example.test\r\nNOOP\r\n")
    lines = c.rest()
    c.close()
    assert len(lines) == 2, lines       # the bad command's error, then the closing line
    assert lines[1].startswith(ERROR_PREFIX[PROTO[listener]]), lines
    assert b"not a web server" in lines[1], lines


@pytest.mark.parametrize("listener", ["smtp", "imap", "pop3"])
def test_mail_commands_still_work(srv, listener):
    c = greeted(srv, listener)
    c.send({"smtp": "EHLO client.test", "imap": "a1 NOOP", "pop3": "CAPA"}[listener])
    first = c.line()
    assert first.startswith({"smtp": b"250-", "imap": b"a1 OK", "pop3": b"+OK"}[listener]), first
    c.close()


# ---------------------------------------------------------------- ALPN

@pytest.mark.parametrize("listener", ["submissions", "imaps", "pop3s"])
def test_alpn_http_refused_on_mail_ports(srv, listener):
    with pytest.raises(ssl.SSLError) as e:
        Line(srv, listener, alpn=["http/1.1"])
    assert "NO APPLICATION PROTOCOL" in str(e.value).upper().replace("_", " "), e.value
    with pytest.raises(ssl.SSLError):
        Line(srv, listener, alpn=["h2", "http/1.1"])


@pytest.mark.parametrize("listener,proto", [("submissions", "smtp"), ("imaps", "imap"),
                                            ("pop3s", "pop3")])
def test_alpn_mail_protocol_or_none_accepted(srv, listener, proto):
    c = greeted(srv, listener, alpn=[proto])
    assert c.sock.selected_alpn_protocol() == proto
    c.close()
    c = greeted(srv, listener, alpn=["http/1.1", proto])
    assert c.sock.selected_alpn_protocol() == proto
    c.close()
    c = greeted(srv, listener)
    assert c.sock.selected_alpn_protocol() is None
    c.close()


def test_alpn_http_refused_after_starttls(srv):
    c = greeted(srv, "imap")
    c.send("a1 STARTTLS")
    assert c.line().startswith(b"a1 OK")
    ctx = srv.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with pytest.raises(ssl.SSLError) as e:
        ctx.wrap_socket(c.sock, server_hostname=HOST)
    assert "NO APPLICATION PROTOCOL" in str(e.value).upper().replace("_", " "), e.value
    c.close()


def test_https_keeps_http11(srv):
    ctx = srv.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % HOST.encode())
            assert s.recv(100).startswith(b"HTTP/1.1 ")


# ---------------------------------------------------------------- failed logins

def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


# Three different login paths per protocol, each with a wrong password: (client lines, the
# prefix of the failure reply).
def failing_logins(user):
    return {
        "submissions": [(["AUTH PLAIN " + plain(user, "wrong-1")], b"535 5.7.8"),
                        (["AUTH LOGIN", b64(user), b64("wrong-2")], b"535 5.7.8"),
                        (["AUTH PLAIN", plain(user, "wrong-3")], b"535 5.7.8")],
        "imaps": [(["a1 LOGIN %s wrong-1" % user], b"a1 NO [AUTHENTICATIONFAILED]"),
                  (["a2 AUTHENTICATE PLAIN " + plain(user, "wrong-2")],
                   b"a2 NO [AUTHENTICATIONFAILED]"),
                  (["a3 AUTHENTICATE LOGIN", b64(user), b64("wrong-3")],
                   b"a3 NO [AUTHENTICATIONFAILED]")],
        "pop3s": [(["USER " + user, "PASS wrong-1"], b"-ERR [AUTH]"),
                  (["AUTH PLAIN " + plain(user, "wrong-2")], b"-ERR [AUTH]"),
                  (["AUTH LOGIN", b64(user), b64("wrong-3")], b"-ERR [AUTH]")],
    }


FAILING_LOGINS = failing_logins(ALICE)


def login_attempt(c, lines):
    """Send a login's lines, reading the prompts between them; return the final reply."""
    for i, l in enumerate(lines):
        c.send(l)
        if i < len(lines) - 1:
            prompt = c.line()
            # POP3's USER is answered +OK; everything else here is a SASL continuation
            want = b"+OK " if str(l).startswith("USER ") else PROMPT[c.proto]
            assert prompt.startswith(want), (c.proto, l, prompt)
    return c.line(30)


def session(srv, listener, source="127.0.0.1"):
    c = greeted(srv, listener, source=source)
    if listener == "submissions":
        c.send("EHLO client.test")
        while not c.line().startswith(b"250 "):
            pass
    return c


@pytest.mark.parametrize("listener", ["submissions", "imaps", "pop3s"])
def test_third_failed_login_closes_the_connection(srv, listener):
    c = session(srv, listener)
    attempts = FAILING_LOGINS[listener]
    for lines, want in attempts[:2]:
        reply = login_attempt(c, lines)
        assert reply.startswith(want), reply
    lines, want = attempts[2]
    reply = login_attempt(c, lines)
    assert reply.startswith(want), reply
    rest = c.rest()
    c.close()
    if listener == "submissions":
        assert rest == [b"421 4.7.0 %s Too many failed logins; closing the connection"
                        % HOST.encode()], rest
    elif listener == "imaps":
        assert rest == [b"* BYE Too many failed logins; closing the connection"], rest
    else:
        assert rest == [], rest
        assert b"closing the connection" in reply, reply
    assert b'reason="too many failed logins"' in srv.log_bytes()


@pytest.mark.parametrize("listener", ["submissions", "imaps", "pop3s"])
def test_two_failures_then_the_right_password(srv, listener):
    c = session(srv, listener)
    for lines, want in FAILING_LOGINS[listener][:2]:
        assert login_attempt(c, lines).startswith(want)
    pw = USERS[ALICE]
    ok = {"submissions": (["AUTH PLAIN " + plain(ALICE, pw)], b"235 "),
          "imaps": (["a9 LOGIN %s %s" % (ALICE, pw)], b"a9 OK"),
          "pop3s": (["USER " + ALICE, "PASS " + pw], b"+OK")}[listener]
    assert login_attempt(c, ok[0]).startswith(ok[1])
    c.close()


SLOW_CASES = ["submissions", "submission", "imaps", "imap", "pop3s", "pop3"]


@pytest.mark.parametrize("listener", SLOW_CASES)
def test_first_failure_waits_at_least_2s_without_stalling_others(slow, listener):
    """The shipped login_failure_delay: even the first wrong password of an IP and of an
    account (each case comes from an address of its own, 127.0.0.N, for an account of its own,
    so the growing brake has nothing to count yet) is answered after 2 s or more, and
    meanwhile the (single) worker serves other sessions."""
    n = SLOW_CASES.index(listener) + 1
    source, user = "127.0.0.%d" % (10 + n), "r%d@example.test" % n
    if listener in IMPLICIT_TLS:
        c = session(slow, listener, source)
    else:   # STARTTLS first, then the same exchange
        c = greeted(slow, listener, source=source)
        c.send({"submission": "EHLO client.test", "imap": "s1 STARTTLS",
                "pop3": "STLS"}[listener])
        while True:
            l = c.line()
            if not l.startswith(b"250-"):
                break
        if listener == "submission":
            c.send("STARTTLS")
            l = c.line()
        assert l.startswith(STARTTLS_OK[c.proto]), (listener, l)
        c.sock = slow.ssl_context().wrap_socket(c.sock, server_hostname=HOST)
        if listener == "submission":
            c.send("EHLO client.test")
            while not c.line().startswith(b"250 "):
                pass
    tls_name = {"submission": "submissions", "imap": "imaps", "pop3": "pop3s"}.get(listener,
                                                                                  listener)
    lines, want = failing_logins(user)[tls_name][0]
    for l in lines[:-1]:
        c.send(l)
        c.line()
    t0 = time.monotonic()
    c.send(lines[-1])
    # while the failure waits, another session is greeted and served
    other = greeted(slow, "imaps")
    other.send("o1 NOOP")
    assert other.line().startswith(b"o1 OK")
    assert not c.pending(), "the failure was answered before another session got a NOOP in"
    other.close()
    reply = c.line(30)
    waited = time.monotonic() - t0
    assert reply.startswith(want), reply
    assert waited >= 2.0, "the failure was answered after %.2f s" % waited
    c.close()
