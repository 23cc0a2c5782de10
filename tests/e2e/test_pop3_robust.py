"""POP3 robustness (issue 11): a dropped connection releases the mailbox lock at once in every
state; sizes; bad input before login; what a peer makes the server hold stays bounded."""
import poplib
import socket
import struct
import time

import pytest

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


def _drop(sock, how):
    """End the connection without QUIT or TLS close_notify: a TCP FIN, a RST, or nothing at all
    (a client that vanished, like a phone losing its signal: TCP_REPAIR closes silently)."""
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "vanish":
        time.sleep(0.5)   # every segment acknowledged: no retransmission will meet a RST
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
    time.sleep(0.2)
    return t


def _state_top(srv, user):
    t = _tls(srv)
    _login_raw(t, user, srv.password)
    t.sendall(b"DELE 2\r\nTOP 1 100000\r\n")
    assert _line(t).startswith(b"+OK")
    assert _line(t).startswith(b"+OK")
    time.sleep(0.2)
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
