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


def test_search_from_matches_address_with_comments(srv, user, clients):  # noqa: F811
    """SEARCH FROM compares with the addr-spec too: comments and blanks inside an address
    (RFC 5322 3.4.1 CFWS) do not hide it."""
    c = login(srv, user, clients)
    append(c, "INBOX", "From: <user-from (comment)@ (comment) domain.org>\r\nSubject: a\r\n\r\nx\r\n")
    append(c, "INBOX", "From: other@domain.org\r\nSubject: b\r\n\r\nx\r\n")
    c.ok("SELECT INBOX")
    r = c.ok("SEARCH FROM user-from@domain.org")
    assert r.of("SEARCH") == [["1"]], c.dialogue()


def test_search_header_looks_at_every_instance(srv, user, clients):  # noqa: F811
    c = login(srv, user, clients)
    append(c, "INBOX", "From: a@b.test\r\nX-Extra: hello beautiful header\r\n"
                       "X-Extra: another one\r\n\r\nbody\r\n")
    c.ok("SELECT INBOX")
    assert c.ok('SEARCH HEADER X-Extra "another"').of("SEARCH") == [["1"]], c.dialogue()
    assert c.ok('SEARCH HEADER X-Extra "hello"').of("SEARCH") == [["1"]], c.dialogue()
    assert c.ok('SEARCH HEADER X-Extra "absent"').of("SEARCH") == [[]], c.dialogue()


def test_search_modseq_with_entry_name_and_type(srv, user, clients):  # noqa: F811
    """RFC 7162 3.1.5: MODSEQ takes an optional entry name and entry type before the value."""
    c = login(srv, user, clients)
    for i in range(3):
        append(c, "INBOX", "From: a@b.test\r\nSubject: %d\r\n\r\nbody\r\n" % i)
    c.ok("SELECT INBOX")
    r = c.ok("STORE 2 +FLAGS (\\Seen)")
    ms = int(re.search(r"MODSEQ \((\d+)\)", " ".join(u.decode() for u in r.untagged)).group(1)) \
        if b"MODSEQ" in b"".join(r.untagged) else None
    if ms is None:
        ms = int(c.ok("FETCH 2 (MODSEQ)").fetches()[2]["MODSEQ"][0])
    r = c.ok('SEARCH MODSEQ "/flags/\\\\seen" all %d' % ms)
    assert r.of("SEARCH")[0][:1] == ["2"], c.dialogue()
    c.ok('SEARCH MODSEQ "/flags/\\\\draft" priv 1')
    c.expect("BAD", 'SEARCH MODSEQ "/flags/\\\\seen" nonsense 1')
