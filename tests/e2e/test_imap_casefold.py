"""Unicode-aware case-insensitive SEARCH and SORT (issue 10): RFC 5051 i;unicode-casemap, i.e.
full Unicode case folding then compatibility decomposition (NFKD), for SEARCH SUBJECT/BODY/
TEXT/HEADER and for SORT's text keys.

Messages are appended with imaplib: UTF-8 subjects raw (8bit) and as an RFC 2047 encoded-word,
bodies 8bit and quoted-printable; search strings travel as UTF-8 literals (CHARSET UTF-8).
"""
import imaplib

import pytest

from test_imap_helpers import (Imap, Lit, _no_crash, clients, imaplib_login, srv,  # noqa: F401
                               user)


def mail(subject, body, cte="8bit", frm="Sender <sender@remote.test>", mid="x"):
    return ("From: %s\r\nTo: rcpt@example.test\r\nSubject: %s\r\n"
            "Date: Mon, 07 Jul 2025 10:00:00 +0000\r\nMessage-ID: <%s@remote.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: %s\r\n\r\n%s\r\n"
            % (frm, subject, mid, cte, body)).encode("utf-8")


# seq: subject and body as stored
MESSAGES = [
    # 1: raw UTF-8 subject and 8bit body
    mail("Città di Perù", "Ma perché no? Ci vediamo in città.", mid="1"),
    # 2: RFC 2047 subject ("Hauptstraße 5"), quoted-printable body ("Perché la Straße?")
    mail("=?UTF-8?Q?Hauptstra=C3=9Fe_5?=", "Perch=C3=A9 la Stra=C3=9Fe?", cte="quoted-printable",
         mid="2"),
    # 3: Greek, capitals in the subject, final sigma in the body
    mail("=?UTF-8?B?zp/OlM6fzqM=?=", "Στην οδος", mid="3"),     # subject "ΟΔΟΣ"
    # 4: the same words without accents, ASCII only
    mail("City of Peru", "perche not? Strasse.", cte="7bit", mid="4"),
]


@pytest.fixture
def box(srv, user, clients):
    m = imaplib_login(srv, user, "imaps")
    clients.append(m)
    for raw in MESSAGES:
        typ, _ = m.append("INBOX", None, None, raw)
        assert typ == "OK"
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    return m


def search(m, key, text):
    """SEARCH CHARSET UTF-8 <key> {n}<text>: the matching sequence numbers."""
    m.literal = text.encode("utf-8")
    typ, data = m.search("UTF-8", key)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def test_search_subject_accented_capitals(box):
    assert search(box, "SUBJECT", "CITTÀ") == [1]
    assert search(box, "SUBJECT", "città di perù") == [1]
    assert search(box, "SUBJECT", "CITTÁ") == []          # an acute accent is not a grave one


def test_search_body_8bit_and_quoted_printable(box):
    # message 1 says "perché" in an 8bit body, message 2 "Perch=C3=A9" in quoted-printable;
    # message 4's "perche" has no accent and does not match
    assert search(box, "BODY", "PERCHÉ") == [1, 2]
    assert search(box, "TEXT", "PERCHÉ") == [1, 2]
    assert search(box, "BODY", "IN CITTÀ") == [1]


def test_search_full_folding_sharp_s(box):
    # full case folding: "ß" is "ss"; message 2's subject is an RFC 2047 encoded-word and its
    # body is quoted-printable, message 4 is plain ASCII "Strasse"
    assert search(box, "SUBJECT", "STRASSE") == [2]
    assert search(box, "SUBJECT", "hauptstraße") == [2]
    assert search(box, "BODY", "STRASSE") == [2, 4]
    assert search(box, "BODY", "straße") == [2, 4]


def test_search_greek_sigma(box):
    # the subject "ΟΔΟΣ" (encoded-word) and the body's "οδος" (final sigma) fold alike
    assert search(box, "SUBJECT", "οδος") == [3]
    assert search(box, "BODY", "ΟΔΟΣ") == [3]
    assert search(box, "TEXT", "ΣΤΗΝ ΟΔΟΣ") == [3]
    assert search(box, "SUBJECT", "οδοι") == []


def test_search_header_key_and_uid_search(box):
    box.literal = "PERÙ".encode("utf-8")
    typ, data = box.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", "Subject")
    assert typ == "OK", data
    assert len(data[0].split()) == 1


def test_search_decomposition_finds_base_letters(box):
    # RFC 5051 matches the decomposed forms: "perù" is "peru" + U+0300, so an ASCII "PERU"
    # finds both the ASCII and the accented subject (an accented needle stays strict)
    assert search(box, "SUBJECT", "PERU") == [1, 4]
    assert search(box, "SUBJECT", "PERÙ") == [1]


def test_search_quoted_8bit_string(srv, user, clients):
    """The same over a raw dialogue, with the UTF-8 string in a quoted string (as clients send
    after ENABLE UTF8=ACCEPT) and in a literal."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("APPEND", "INBOX", Lit(MESSAGES[0]))
    c.ok("APPEND", "INBOX", Lit(MESSAGES[3]))
    c.ok("SELECT", "INBOX")
    for arg in (Lit("PERCHÉ".encode("utf-8")), '"PERCHÉ"'):
        r = c.ok("SEARCH", "CHARSET", "UTF-8", "BODY", arg)
        got = [u.decode() if isinstance(u, bytes) else u for u in r.untagged]
        assert [u.strip() for u in got if u.startswith("* SEARCH")] == ["* SEARCH 1"], \
            c.dialogue()


def sort_mail(subject, frm, mid):
    return mail(subject, "x", cte="7bit", frm=frm, mid=mid)


def test_sort_subject_and_display_unicode_folded(srv, user, clients):
    """SORT compares folded keys: accented letters sort with their base letters, "ß" as "ss".
    Folded keys (ASCII letters shown upper-cased, as i;ascii-casemap compares them):
      1 "Zebra"     ZEBRA          display "Zoë"    ZOE + U+0308
      2 "élan"      E U+0301 LAN   display "Émile"  E U+0301 MILE
      3 "ÉTÉ"       E U+0301 TE..  display "Yann"   YANN
      4 "apple"     APPLE          display "Ärger"  A U+0308 RGER
      5 "STRASSE b" STRASSE B
      6 "straße a"  STRASSE A
    By octets of the unfolded text (the old order) "Zebra" came before every accented subject
    and "straße a" after "STRASSE b"."""
    m = imaplib_login(srv, user, "imaps")
    clients.append(m)
    rows = [("Zebra", "Zoë <z@x.test>"), ("élan", "Émile <e@x.test>"),
            ("=?UTF-8?Q?=C3=89T=C3=89?=", "Yann <y@x.test>"),
            ("apple", "=?UTF-8?Q?=C3=84rger?= <a@x.test>"),
            ("STRASSE b", "b@x.test"), ("straße a", "a@x.test")]
    for i, (sub, frm) in enumerate(rows):
        assert m.append("INBOX", None, None, sort_mail(sub, frm, "s%d" % i))[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    typ, data = m.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK", data
    assert [int(x) for x in data[0].split()] == [4, 2, 3, 6, 5, 1]
    typ, data = m.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")
    assert [int(x) for x in data[0].split()] == [1, 5, 6, 3, 2, 4]
    typ, data = m.sort("(DISPLAYFROM)", "UTF-8", "1:4")
    assert typ == "OK", data
    assert [int(x) for x in data[0].split()] == [4, 2, 3, 1]


def test_search_body_in_other_charsets(srv, user, clients):
    """A body in ISO-8859-1 (8bit), windows-1252 (quoted-printable) or ISO-8859-15 (base64) is
    converted to UTF-8 before it is matched, so the UTF-8 needle "PERCHÉ" finds "Perché"
    written as the single octet 0xE9."""
    import base64
    m = imaplib_login(srv, user, "imaps")
    clients.append(m)
    head = ("From: a@x.test\r\nTo: b@x.test\r\nSubject: cs %d\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=%s\r\nContent-Transfer-Encoding: %s\r\n\r\n")
    bodies = [
        (head % (1, "iso-8859-1", "8bit")).encode() + "Ma perché no? Città.\r\n".encode("latin-1"),
        (head % (2, '"windows-1252"', "quoted-printable")).encode() + b"Perch=E9 =80 5\r\n",
        (head % (3, "ISO-8859-15", "base64")).encode()
        + base64.b64encode("Ach, die Straße. Perché?\r\n".encode("iso-8859-15")) + b"\r\n",
        (head % (4, "us-ascii", "7bit")).encode() + b"perche, no accent\r\n",
    ]
    for raw in bodies:
        assert m.append("INBOX", None, None, raw)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert search(m, "BODY", "PERCHÉ") == [1, 2, 3]
    assert search(m, "BODY", "CITTÀ") == [1]
    assert search(m, "TEXT", "STRASSE") == [3]
    assert search(m, "BODY", "€ 5") == [2]          # 0x80 is the euro sign in windows-1252
