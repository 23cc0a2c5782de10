"""Bugs fuzz-smtp (src/smtp/fuzz-smtp.c) found in the SMTP session, each with the raw dialogue
that showed it."""
import socket

from smtphelp import CONNECT_ADDR


def dialogue(port, data, timeout=10):
    """Send data on a fresh connection to port 25 and read until the server closes."""
    s = socket.create_connection((CONNECT_ADDR, port), timeout)
    try:
        greeting = b""
        while not greeting.startswith(b"220 ") and b"\r\n220 " not in greeting:
            b = s.recv(4096)   # port 25 refuses clients that talk before the whole 220
            assert b, "closed during the greeting: %r" % greeting
            greeting += b
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    finally:
        s.close()


def test_reply_never_echoes_a_bare_cr(server):
    # the unsupported parameter was echoed with its CR: a client that ends lines at CR read
    # "FAKE=1" as the start of another reply line
    out = dialogue(server.smtp_port, b"EHLO x\r\nMAIL FROM:<x@remote.test> TQU\r250 FAKE=1\r\n"
                                     b"MAIL FROM:<x@remote.test> A\x01B=\x7f\r\nQUIT\r\n")
    assert b"555 5.5.4" in out, out
    for line in out.split(b"\r\n")[:-1]:
        assert not any(c < 32 or c == 127 for c in line), "control octet in reply %r" % line
    assert out.endswith(b"\r\n"), out
