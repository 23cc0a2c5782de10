"""IMAP memory and time bounds (issue 11): what a client makes the server hold before and after
login, COMPRESS=DEFLATE bombs, overlong lines, the error limit before login, and the listener's
command_timeout and line_length_limit.

Memory is measured as the resident size of the server's worker processes (children of
`postino serve`, /proc/PID/status VmRSS), summed, before and while hostile clients are
connected. Under AddressSanitizer freed memory sits in quarantine and RSS says little, so there
the memory assertions are skipped (the protocol assertions still run)."""
import os
import re
import socket
import ssl
import time
import zlib

import pytest

from test_imap_helpers import (HOST, Imap, Lit, _no_crash, clients, make_server, quote, session,
                               srv, user, all_started, wait_until)

MB = 1 << 20


def _sanitized():
    import postino_server
    try:
        with open(postino_server.BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = _sanitized()


def assert_grew_less(s, base, limit, what="workers"):
    """The workers' RSS grew by less than limit since base (skipped under ASan)."""
    grown = worker_rss(s) - base
    if not SANITIZED:
        assert grown < limit, "%s grew by %d MB" % (what, grown // MB)


def worker_rss(s):
    """Summed VmRSS in octets of every child process of the serve process."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/status" % pid) as f:
                st = f.read()
        except OSError:
            continue
        m = re.search(r"^PPid:\s+(\d+)", st, re.M)
        if not m or int(m.group(1)) != s.proc.pid:
            continue
        r = re.search(r"^VmRSS:\s+(\d+) kB", st, re.M)
        if r:
            total += int(r.group(1)) * 1024
    return total


def raw_connect(s, how):
    sock = socket.create_connection(("127.0.0.1", s.port(how)), 10)
    if how == "imaps":
        sock = s.ctx().wrap_socket(sock, server_hostname=HOST)
    sock.settimeout(10)
    return sock


def recv_until(sock, pred, timeout=10):
    """Read until pred(data) or EOF or timeout; returns (data, closed)."""
    data = b""
    end = time.monotonic() + timeout
    while not pred(data):
        left = end - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ssl.SSLError, OSError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def wait_closed(sock, timeout=10):
    """Read and drop until the server closes; returns (all data, closed)."""
    return recv_until(sock, lambda d: False, timeout)


def send_quietly(sock, data):
    """sendall that tolerates the server closing half-way (it may refuse early)."""
    try:
        for i in range(0, len(data), 1 << 20):
            sock.sendall(data[i:i + (1 << 20)])
        return True
    except (ssl.SSLError, OSError):
        return False


def send_watching(sock, data, chunk=16384):
    """Send data in chunks, stopping as soon as the server says anything (or closes), so that
    its reply is read before a reset could discard it. Returns what the server sent."""
    got = b""
    for i in range(0, len(data), chunk):
        try:
            sock.settimeout(10)
            sock.sendall(data[i:i + chunk])
        except (ssl.SSLError, OSError):
            break
        sock.settimeout(0)
        try:
            d = sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        except (ssl.SSLError, OSError):
            break
        if not d:
            break
        got += d
        break
    sock.settimeout(10)
    return got


# ------------------------------------------------------------------ before login

def test_capability_literal_minus_before_login(srv, user, clients):
    c = Imap(srv, "imaps")
    clients.append(c)
    caps = c.caps()
    assert "LITERAL-" in caps and "LITERAL+" not in caps, c.dialogue()
    assert b"LITERAL-" in c.greeting and b"LITERAL+" not in c.greeting, c.greeting
    r = c.login(user)
    assert "LITERAL+" in r.text and "LITERAL-" not in r.text, c.dialogue()
    caps = c.caps()
    assert "LITERAL+" in caps and "LITERAL-" not in caps, c.dialogue()


@pytest.mark.parametrize("size", [26214400, 65537])
def test_sync_literal_before_login_refused_without_continuation(srv, user, clients, size):
    c = Imap(srv, "imaps")
    clients.append(c)
    c.send("a1 LOGIN {%d}\r\n" % size)
    r = c.read_response(10)
    assert r.startswith(b"a1 BAD [TOOBIG]"), c.dialogue()
    assert c.alive(), c.dialogue()
    # a small literal still works, LITERAL- sized non-synchronizing ones too
    r = c.cmd("LOGIN", Lit(user.encode(), plus=True), Lit(srv.password.encode()))
    assert r.status == "OK", c.dialogue()


def test_nonsync_literal_over_4096_before_login(srv, user, clients):
    """LITERAL-: a {n+} over 4096 octets gets BAD [TOOBIG]; its data is dropped, not parsed."""
    c = Imap(srv, "imaps")
    clients.append(c)
    junk = (b"z LOGOUT\r\n" * 600)[:5000]
    c.send(b"a1 ID (\"name\" {5000+}\r\n" + junk + b")\r\n")
    r = c.read_response(10)
    assert r.startswith(b"a1 BAD [TOOBIG]"), c.dialogue()
    assert c.alive(), c.dialogue()
    c.login(user)


@pytest.mark.parametrize("how,cmd", [("imap", b"a1 LOGIN {26214400+}\r\n"),
                                     ("imaps", b"a1 ID (\"name\" {26214400+}\r\n")])
def test_huge_nonsync_literal_before_login_holds_no_memory(how, cmd):
    """Three clients that never log in each announce a 25 MB non-synchronising literal and
    send it. The server answers BAD and BYE and closes; its workers do not grow by the data."""
    s = make_server()
    socks = []
    try:
        # the baseline once every child runs (a late one would count as growth)
        wait_until(lambda: all_started(s), 10, 0.05, "the workers and the queue to start")
        base = worker_rss(s)
        payload = b"x" * (25 * MB)
        replies = []
        for i in range(3):
            sock = raw_connect(s, how)
            socks.append(sock)
            recv_until(sock, lambda d: b"\r\n" in d)   # greeting
            sock.sendall(cmd)
            data, closed = recv_until(sock, lambda d: b"BYE" in d, 2)
            send_quietly(sock, payload)
            more, closed = wait_closed(sock, 1)
            replies.append((data + more, closed))
        # the observation window: what the workers took in and still hold within it counts
        time.sleep(0.5)
        grown = worker_rss(s) - base
        if SANITIZED:
            grown = 0
        assert grown < 20 * MB, "workers grew by %d MB for clients that never logged in" % (
            grown // MB)
        for data, closed in replies:
            assert re.search(rb"a1 BAD \[TOOBIG\]", data), data
            assert b"* BYE" in data and closed, data
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_bad_commands_before_login_disconnect(srv, clients):
    c = Imap(srv, "imaps")
    clients.append(c)
    for i in range(4):
        c.expect("BAD", "FROBNICATE%d" % i)
    c.send("x5 FROBNICATE\r\n")
    assert c.read_response(5).startswith(b"x5 BAD"), c.dialogue()
    assert re.match(rb"\* BYE Too many invalid commands", c.read_response(5)), c.dialogue()
    with pytest.raises((EOFError, OSError)):
        c.read_response(5)


def test_bad_commands_after_login_use_max_errors(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    for i in range(8):
        c.expect("BAD", "FROBNICATE%d" % i)
    assert c.alive(), c.dialogue()


# ------------------------------------------------------------------ overlong lines

def test_endless_line_closes_before_login(srv, clients):
    """A line without LF far past the limit: BAD and BYE, not swallowed for ever."""
    sock = raw_connect(srv, "imaps")
    try:
        recv_until(sock, lambda d: b"\r\n" in d)
        data = send_watching(sock, b"a1 NOOP " + b"x" * (4 * MB))
        more, closed = wait_closed(sock, 10)
        data += more
        assert re.search(rb"a1 BAD Command line too long", data), data
        assert b"* BYE" in data and closed, data
    finally:
        sock.close()


def test_endless_line_closes_after_login(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    data = send_watching(c.sock, b"a1 SEARCH " + b"1," * (2 * MB))
    more, closed = wait_closed(c.sock, 10)
    data += more
    assert re.search(rb"a1 BAD Command line too long", c.buf + data), data
    assert b"* BYE" in data and closed, data


# ------------------------------------------------------------------ COMPRESS=DEFLATE

def compress_session(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    c.ok("COMPRESS DEFLATE")
    return c


def send_bomb(c, wire, timeout=20):
    """Send a compressed stream; returns (inflated server output, closed)."""
    inf = zlib.decompressobj(-15)
    data = send_watching(c.sock, wire, 4096)
    more, closed = wait_closed(c.sock, timeout)
    return inf.decompress(data + more), closed


def bomb(nbytes, prefix=b"", suffix=b""):
    """Raw DEFLATE of prefix + nbytes of 'a' + suffix (sync-flushed, like a client's stream)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [z.compress(prefix)]
    chunk = b"a" * MB
    for _ in range(nbytes // MB):
        out.append(z.compress(chunk))
    out.append(z.compress(suffix))
    out.append(z.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)


def test_deflate_bomb_without_newline_closes(srv, user, clients):
    """50 MB of inflated input without a newline (51 KB on the wire): BAD, BYE, closed, and the
    workers hold nothing of it."""
    c = compress_session(srv, user, clients)
    base = worker_rss(srv)
    wire = bomb(50 * MB, b"a1 NOOP ")
    assert len(wire) < 100 * 1024
    text, closed = send_bomb(c, wire)
    assert re.search(rb"a1 BAD Command line too long", text), text[-500:]
    assert b"* BYE" in text and closed, text[-500:]
    assert_grew_less(srv, base, 20 * MB)


def test_deflate_bomb_in_literal_over_budget_closes(srv, user, clients):
    """A non-synchronising literal announced above the per-command budget (4 messages) is not
    inflated at all: BAD [TOOBIG], BYE, closed."""
    c = compress_session(srv, user, clients)
    base = worker_rss(srv)
    wire = bomb(110 * MB, b"a1 APPEND INBOX {115343360+}\r\n")
    text, closed = send_bomb(c, wire)
    assert re.search(rb"a1 BAD \[TOOBIG\]", text), text[-500:]
    assert b"* BYE" in text and closed, text[-500:]
    assert_grew_less(srv, base, 20 * MB)


def test_deflate_literal_over_message_limit_is_dropped(srv, user, clients):
    """Between the message limit and the command budget: inflated and dropped, BAD [TOOBIG],
    the session goes on."""
    c = compress_session(srv, user, clients)
    base = worker_rss(srv)
    n = 30 * MB
    wire = bomb(n, b"a1 APPEND INBOX {%d+}\r\n" % n, b"\r\na2 NOOP\r\n")
    send_quietly(c.sock, wire)
    inf = zlib.decompressobj(-15)
    text = b""
    end = time.monotonic() + 20
    while b"a2 OK" not in text and time.monotonic() < end:
        data, closed = recv_until(c.sock, lambda d: len(d) > 0, 2)
        text += inf.decompress(data)
        assert not closed, text
    assert re.search(rb"a1 BAD \[TOOBIG\]", text), text
    assert_grew_less(srv, base, 20 * MB)


# ------------------------------------------------------------------ listener settings

@pytest.fixture(scope="module")
def tight():
    s = make_server(extra_conf="imap.command_timeout = 2s\nimap.line_length_limit = 10000\n"
                               "imaps.line_length_limit = 9000\n")
    yield s
    s.stop()


@pytest.mark.parametrize("how", ["imap", "imaps"])
def test_command_timeout_before_login(tight, how):
    """imap.command_timeout = 2s: an idle client that never logs in gets BYE (imaps keeps the
    default of 5 minutes)."""
    sock = raw_connect(tight, how)
    try:
        recv_until(sock, lambda d: b"\r\n" in d)
        t0 = time.monotonic()
        data, closed = recv_until(sock, lambda d: b"BYE" in d, 8)
        if how == "imap":
            assert b"* BYE Autologout" in data, data
            assert 1.5 <= time.monotonic() - t0 < 8
        else:
            assert data == b"" and not closed, data
    finally:
        sock.close()


def test_command_timeout_after_login_at_least_30_minutes(tight, clients):
    """After login the autologout is never below 30 minutes (RFC 9051 section 5.4)."""
    u = "t%d@example.test" % int(time.time() * 1000)
    tight.add_user(u)
    c = Imap(tight, "starttls")
    clients.append(c)
    c.login(u)
    time.sleep(4)   # the subject: idle for longer than imap.command_timeout (2 s)
    assert c.alive(), c.dialogue()


def test_line_length_limit_setting(tight, clients):
    u = "l%d@example.test" % int(time.time() * 1000)
    tight.add_user(u)
    c = Imap(tight, "starttls")
    clients.append(c)
    c.login(u)
    c.ok("NOOP " + "x" * 9900)
    c.expect("BAD", "NOOP " + "x" * 10100)
    assert c.alive(), c.dialogue()
    # the other listener has its own limit
    d = Imap(tight, "imaps")
    clients.append(d)
    d.login(u)
    d.ok("NOOP " + "x" * 8900)
    d.expect("BAD", "NOOP " + "x" * 9100)
    # too long and not ending: BAD, BYE, closed
    data = send_watching(c.sock, b"t99 NOOP " + b"x" * 30000, 1000)
    more, closed = wait_closed(c.sock, 10)
    data += more
    assert re.search(rb"t99 BAD Command line too long", c.buf + data), data
    assert b"* BYE" in data and closed, data


@pytest.mark.parametrize("when", ["sasl", "idle"])
def test_endless_continuation_line_closes(srv, user, clients, when):
    """A SASL response or a line during IDLE that runs past the line limit: BYE, closed."""
    if when == "sasl":
        c = Imap(srv, "imaps")
        clients.append(c)
        c.send("a1 AUTHENTICATE PLAIN\r\n")
    else:
        c = session(srv, user, "imaps", clients, select="INBOX")
        c.send("a1 IDLE\r\n")
    assert c.read_response(5).startswith(b"+"), c.dialogue()
    data = send_watching(c.sock, b"A" * (200 * 1024))
    more, closed = wait_closed(c.sock, 10)
    data += more
    assert b"* BYE" in data and closed, data
