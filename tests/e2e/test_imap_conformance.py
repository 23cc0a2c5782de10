"""IMAP conformance points found with Dovecot's imaptest (tests/e2e/test_imaptest.py), each
checked here with a small client of our own so that a run without IMAPTEST covers them too."""
import re

from test_imap_helpers import Imap, Lit, _no_crash, append, clients, quote, srv, user  # noqa: F401


def login(srv, user, clients, box=None):  # noqa: F811
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    if box:
        c.ok("SELECT", quote(box))
    return c


def test_body_section_with_nul_is_sent_without_nul(srv, user, clients):  # noqa: F811
    """RFC 3501 4.3: a plain literal carries no NUL; BODY[1] of a binary part maps NUL to 0x80
    while BINARY[1] sends the octets as stored in a literal8 (RFC 3516)."""
    c = login(srv, user, clients)
    msg = (b"From: user@domain.org\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
           b"Mime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n")
    c.ok("APPEND INBOX", Lit(msg, binary=True))
    c.ok("SELECT INBOX")
    r = c.ok("FETCH 1 (BODY.PEEK[1])")
    raw = b"".join(r.untagged)
    assert b"BODY[1] {6}\r\n\x80-\xe4\n\r\n" in raw, c.dialogue()
    assert b"\x00" not in raw, c.dialogue()
    r = c.ok("FETCH 1 (BINARY.PEEK[1])")
    assert b"BINARY[1] ~{6}\r\n\x00-\xe4\n\r\n" in b"".join(r.untagged), c.dialogue()
