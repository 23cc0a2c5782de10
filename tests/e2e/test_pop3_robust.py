"""POP3 robustness (issue 11): a dropped connection releases the mailbox lock at once in every
state; sizes; bad input before login; what a peer makes the server hold stays bounded."""
import poplib
import ssl
import socket
import struct
import time

import pytest

from conftest import open_connections, wait_until
from postino_server import Server

USER = "drop@example.test"
BIG = "big@example.test"


@pytest.fixture(scope="module")
def srv():
    s = Server(users=(USER, BIG, "sizes@example.test", "mem@example.test"))
    s.deliver(USER, "Subject: keep me\r\n\r\nbody\r\n")
    s.deliver(USER, "Subject: second\r\n\r\nbody two\r\n")
    s.deliver(BIG, "Subject: big\r\n\r\n" + ("z" * 998 + "\r\n") * 8000)   # ~8 MB
    s.deliver(BIG, "Subject: small\r\n\r\nbody\r\n")
    yield s
    s.stop()


def _tls(srv, port="pop3s"):
    s = socket.create_connection(("127.0.0.1", srv.port(port)), 10)
    t = srv.ctx().wrap_socket(s, server_hostname="mail.example.test")
    return t


def _line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        c = sock.recv(1)
        if not c:
            break
        data += c
    return data


TCP_REPAIR = 19   # linux/tcp.h
TCP_INFO_UNACKED = 24   # offset of tcpi_unacked in struct tcp_info (linux/tcp.h)


def _all_acked(sock):
    """Has the server acknowledged every segment sent on sock, and sock every one it got?"""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)   # sends a pending ACK now
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, TCP_INFO_UNACKED)[0] == 0


def _drop(sock, how):
    """End the connection without QUIT or TLS close_notify: a TCP FIN, a RST, or nothing at all
    (a client that vanished, like a phone losing its signal: TCP_REPAIR closes silently)."""
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "vanish":
        # every segment acknowledged both ways: no retransmission will meet a RST
        wait_until(lambda: _all_acked(sock), 5, 0.01, "the segments in flight to be acknowledged")
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    sock.close()


def _relogin(srv, user, deadline=2.0):
    """Log in again right away: the lock of a dropped session is gone within ~1 s (a vanished
    client's within seconds: the server waits for it while the kernel probes the peer)."""
    end = time.time() + deadline
    while True:
        p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
        p.user(user)
        try:
            p.pass_(srv.password)
            return p
        except poplib.error_proto as e:
            p.close()
            if b"[IN-USE]" not in e.args[0] or time.time() > end:
                raise
            time.sleep(0.1)


def _login_raw(t, user, password):
    assert _line(t).startswith(b"+OK")
    t.sendall(("USER %s\r\n" % user).encode())
    assert _line(t).startswith(b"+OK")
    t.sendall(("PASS %s\r\n" % password).encode())
    assert _line(t).startswith(b"+OK Logged in")


def _state_user(srv, user):
    t = _tls(srv)
    assert _line(t).startswith(b"+OK")
    t.sendall(("USER %s\r\n" % user).encode())
    assert _line(t).startswith(b"+OK")
    return t


def _state_dele(srv, user):
    t = _tls(srv)
    _login_raw(t, user, srv.password)
    t.sendall(b"DELE 1\r\n")
    assert _line(t).startswith(b"+OK")
    return t


def _state_retr(srv, user):
    t = _tls(srv)
    _login_raw(t, user, srv.password)
    t.sendall(b"DELE 2\r\nRETR 1\r\n")
    assert _line(t).startswith(b"+OK")
    assert _line(t).startswith(b"+OK")
    t.recv(1000)   # the message streams; the client stops reading here
    time.sleep(0.2)   # the subject: the client stays silent while the server streams on
    return t


def _state_top(srv, user):
    t = _tls(srv)
    _login_raw(t, user, srv.password)
    t.sendall(b"DELE 2\r\nTOP 1 100000\r\n")
    assert _line(t).startswith(b"+OK")
    assert _line(t).startswith(b"+OK")
    time.sleep(0.2)   # the subject: the client stays silent while the server streams on
    return t


def _state_stls(srv, user):
    s = socket.create_connection(("127.0.0.1", srv.port("pop3")), 10)
    assert _line(s).startswith(b"+OK")
    s.sendall(b"STLS\r\n")
    assert _line(s).startswith(b"+OK")
    t = srv.ctx().wrap_socket(s, server_hostname="mail.example.test")
    t.sendall(("USER %s\r\nPASS %s\r\nDELE 1\r\n" % (user, srv.password)).encode())
    assert _line(t).startswith(b"+OK")
    assert _line(t).startswith(b"+OK Logged in")
    assert _line(t).startswith(b"+OK")
    return t


def _state_pending_login(srv, user):
    t = _tls(srv)
    assert _line(t).startswith(b"+OK")
    t.sendall(("USER %s\r\nPASS %s\r\nDELE 1\r\n" % (user, srv.password)).encode())
    return t   # dropped while the password check / mailbox open runs


STATES = {"auth-after-user": (_state_user, USER), "trans-after-dele": (_state_dele, USER),
          "mid-retr-not-reading": (_state_retr, BIG), "during-top": (_state_top, BIG),
          "after-stls-110": (_state_stls, USER), "pending-login": (_state_pending_login, USER)}


def _can_vanish():
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.mark.parametrize("how", ["fin", "rst", "vanish"])
@pytest.mark.parametrize("state", list(STATES))
def test_dropped_connection_releases_lock(srv, state, how):
    if how == "vanish" and not _can_vanish():
        pytest.skip("TCP_REPAIR needs CAP_NET_ADMIN")
    make, user = STATES[state]
    p = _relogin(srv, user)
    before = p.stat()
    p.quit()
    t = make(srv, user)
    _drop(t, how)
    p = _relogin(srv, user)
    assert p.stat() == before   # the message marked for deletion is still there
    p.quit()


# ---- bad commands before login (issue 11 item 5) ----

@pytest.mark.parametrize("port", ["pop3", "pop3s"])
def test_bad_commands_before_login_close(srv, port):
    if port == "pop3s":
        t = _tls(srv)
    else:
        t = socket.create_connection(("127.0.0.1", srv.port("pop3")), 10)
    assert _line(t).startswith(b"+OK")
    t.sendall(b"HELO x\r\nFOO\r\nBAR baz\r\nNOOP\r\n")
    replies = [_line(t) for _ in range(4)]
    assert all(r.startswith(b"-ERR") for r in replies)
    assert b"Too many" in replies[3] and b"closing" in replies[3]
    t.settimeout(5)
    assert t.recv(100) == b""   # closed: NOOP was never answered


def test_good_commands_do_not_count(srv):
    t = _tls(srv)
    assert _line(t).startswith(b"+OK")
    t.sendall(b"CAPA\r\n")
    while _line(t) != b".\r\n":
        pass
    t.sendall(b"FOO\r\nBAR\r\n")
    assert _line(t).startswith(b"-ERR")
    assert _line(t).startswith(b"-ERR")
    t.sendall(("USER %s\r\nPASS %s\r\nSTAT\r\n" % (USER, srv.password)).encode())
    assert _line(t).startswith(b"+OK")
    assert _line(t).startswith(b"+OK Logged in")
    assert _line(t).startswith(b"+OK")
    t.sendall(b"QUIT\r\n")
    assert _line(t).startswith(b"+OK")


# ---- line_length_limit and message_size_limit (issue 11 item 11) ----

def test_line_length_limit_honoured():
    s = Server(extra_conf="pop3s.line_length_limit = 600", users=(USER,))
    try:
        t = _tls(s)
        assert _line(t).startswith(b"+OK")
        t.sendall(b"NOOP " + b"x" * 590 + b"\r\n")   # within the limit: parsed (bad argument)
        r = _line(t)
        assert r.startswith(b"-ERR") and b"too long" not in r
        t.sendall(b"NOOP " + b"x" * 700 + b"\r\n")   # over it
        r = _line(t)
        assert r.startswith(b"-ERR Line too long") and b"600" in r
        t.sendall(("USER %s\r\n" % USER).encode())   # still in step
        assert _line(t).startswith(b"+OK")
        t.close()
        # the default (2048) holds on the other listener: 1000 octets are a line
        p = socket.create_connection(("127.0.0.1", s.port("pop3")), 10)
        assert _line(p).startswith(b"+OK")
        p.sendall(b"X" * 1000 + b"\r\n")
        assert b"too long" not in _line(p)
        p.close()
    finally:
        s.stop()


@pytest.mark.parametrize("key", ["pop3.message_size_limit", "pop3s.message_size_limit"])
def test_message_size_limit_refused_for_pop3(key, tmp_path):
    import subprocess
    from postino_server import BIN
    data = tmp_path / "d"
    subprocess.run([BIN, "quickstart", "mail.example.test", "--data", str(data), "--domain",
                    "example.test"], check=True, capture_output=True)
    conf = data / "postino.conf"
    n = len(conf.read_text().splitlines()) + 1
    with open(conf, "a") as f:
        f.write("%s = 10M\n" % key)
    r = subprocess.run([BIN, "config", "check", "--data", str(data)], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert ("postino.conf:%d:" % n) in r.stderr + r.stdout and "message_size_limit" in r.stderr
    lines = conf.read_text().splitlines()
    conf.write_text("\n".join(lines[:-1]) + "\n")
    r = subprocess.run([BIN, "config", "show", "--data", str(data)], capture_output=True,
                       text=True, check=True)
    assert "pop3s.line_length_limit" in r.stdout
    assert "pop3.message_size_limit" not in r.stdout
    assert "pop3s.message_size_limit" not in r.stdout
    assert "imaps.message_size_limit" in r.stdout


# ---- what a peer makes the server hold stays bounded (issue 11 item 2) ----

def _worker_rss_kb(srv):
    """Total VmRSS of the serve process's children (workers and queue)."""
    import os
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/status" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = dict(l.split(":", 1) for l in st.splitlines() if ":" in l)
        if int(fields.get("PPid", "0").strip()) == srv.proc.pid and "VmRSS" in fields:
            total += int(fields["VmRSS"].split()[0])
    return total


@pytest.fixture(scope="module")
def memsrv():
    """A server of its own for the memory tests; under ASan, freed memory is not held in the
    quarantine (it would count as RSS growth that is not a leak or a held buffer)."""
    import os
    old = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ((old + ":") if old else "") + \
        "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    try:
        s = Server(users=(USER, BIG))
    finally:
        if old is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = old
    s.deliver(USER, "Subject: one\r\n\r\nbody\r\n")
    s.deliver(BIG, "Subject: big\r\n\r\n" + ("z" * 998 + "\r\n") * 2000)
    yield s
    s.stop()


def test_pipelined_commands_without_reading_are_throttled_not_dropped(memsrv):
    srv = memsrv
    """A client that pipelines thousands of commands and reads nothing: the server stops reading
    once its output is queued (bounded), and every reply arrives once the client reads."""
    base = _worker_rss_kb(srv)
    t = _tls(srv)
    try:
        _pipeline(srv, t, base)
    finally:
        t.close()


def _pipeline(srv, t, base):
    _login_raw(t, USER, srv.password)
    n = 200000
    t.setblocking(False)
    payload = b"CAPA\r\n" * n   # ~10 lines of output each: ~30 MB of replies
    sent = 0
    end = time.time() + 10
    while sent < len(payload) and time.time() < end:
        try:
            sent += t.send(payload[sent:sent + 65536])
        except (ssl.SSLWantWriteError, BlockingIOError):
            time.sleep(0.05)   # the server reads no more for now: try again a little later
    t.setblocking(True)
    t.settimeout(20)
    t.sendall(payload[sent:])    # would block for ever if reading never resumed
    # the observation window: what the worker takes in within it counts (no event says "it
    # read all it will", the memory itself is the measure)
    time.sleep(0.5)
    grown = _worker_rss_kb(srv) - base
    assert grown < 8 * 1024, "workers grew by %d KB" % grown
    t.sendall(b"QUIT\r\n")
    data = bytearray()
    while not data.endswith(b"+OK Goodbye\r\n"):
        c = t.recv(65536)
        assert c, "connection closed before all replies"
        data += c
    assert data.count(b"+OK Capability list follows") == n


def test_memory_bounded_before_and_after_login(memsrv):
    srv = memsrv
    base = _worker_rss_kb(srv)
    socks = []
    junk = b"A" * (1024 * 1024)
    for i in range(16):
        t = _tls(srv)
        if i % 2:
            _login_raw(t, USER if i % 4 == 1 else BIG, srv.password) if i < 4 else _line(t)
        else:
            _line(t)
        kind = i % 4
        try:
            t.settimeout(3)
            if kind == 0:   # an endless line
                for _ in range(8):
                    t.sendall(junk)
            elif kind == 1:   # a huge AUTH PLAIN continuation
                t.sendall(b"AUTH PLAIN\r\n")
                for _ in range(8):
                    t.sendall(junk)
            else:   # commands pipelined, output never read
                for _ in range(8):
                    t.sendall(b"LIST\r\nUIDL\r\nCAPA\r\n" * 50000)
        except (socket.timeout, ssl.SSLError, OSError):
            pass   # the server stopped reading: that is the point
        socks.append(t)
    time.sleep(0.5)   # the observation window (as in _pipeline)
    grown = _worker_rss_kb(srv) - base
    for t in socks:
        t.close()
    # the next test's baseline comes after the server let go of these sessions
    wait_until(lambda: open_connections(srv.port("pop3s")) == 0, 10, 0.02,
               "the server to close the sessions")
    assert grown < 16 * 1024, "workers grew by %d KB" % grown


# ---- LIST/STAT sizes: the message's own size (issue 11 item 8) ----

def _put_raw(srv, user, name, data):
    """A message file as another program may leave it: bare LF lines, no final newline."""
    import os
    md = srv.maildir(user)
    os.makedirs(os.path.join(md, "new"), exist_ok=True)
    with open(os.path.join(md, "new", name), "wb") as f:
        f.write(data)


def _check_sizes(srv, user):
    p = _relogin(srv, user)
    count, total = p.stat()
    assert count >= 1
    listed = {int(a): int(b) for a, b in (l.split() for l in p.list()[1])}
    assert sum(listed.values()) == total
    for i in range(1, count + 1):
        resp, lines, octets = p.retr(i)
        assert int(resp.split()[1]) == listed[i]
        assert octets == listed[i]   # poplib counts each line + CRLF, dot-stuffing undone
        assert len(b"\r\n".join(lines)) + 2 == listed[i]
        assert int(p.list(i).split()[2]) == listed[i]
    p.quit()
    return listed


DOTS = (b"From: a@remote.test\r\nSubject: dots\r\n\r\n.one dot\r\n..two dots\n.\nbare lf\n"
        b"crlf\r\n.last line without newline")


def test_list_size_is_message_size_without_stuffing(srv):
    user = "sizes@example.test"
    srv.deliver(user, "Subject: smtp\r\n\r\n.leading\r\n..double\r\nplain\r\n")
    _put_raw(srv, user, "1700000000.M1P1.test", DOTS)
    listed = _check_sizes(srv, user)
    want = len(DOTS.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) + 2
    assert want in listed.values()


def test_sizes_of_an_older_index_are_recounted():
    """An index whose sizes were counted with the stuffing (level < 5) is recounted once."""
    import sqlite3
    s = Server(users=("sizes@example.test",))
    try:
        user = "sizes@example.test"
        _put_raw(s, user, "1700000000.M2P2.test", DOTS)
        s.deliver(user, "Subject: smtp\r\n\r\n.leading\r\nplain\r\n")
        good = _check_sizes(s, user)
        db = s.index(user)
        db.execute("UPDATE messages SET wire_size = wire_size + 7")   # the old stuffed count
        db.execute("PRAGMA user_version = 3")
        db.commit()
        db.close()
        assert _check_sizes(s, user) == good
        db = s.index(user)
        assert [r[0] for r in db.execute("SELECT wire_size FROM messages ORDER BY uid")] == \
            [good[k] for k in sorted(good)]
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 5
    finally:
        s.stop()


def test_retr_after_top_sends_the_whole_message(srv):
    """TOP's cut must not carry over into the next RETR (the parser refactor for the fuzz
    target found the shared 'done' flag)."""
    p = _relogin(srv, USER)
    try:
        top = p.top(1, 0)[1]
        assert top[-1] == b""
        resp, lines, octets = p.retr(1)
        assert int(resp.split()[1]) == octets and len(lines) > len(top)
    finally:
        p.quit()
