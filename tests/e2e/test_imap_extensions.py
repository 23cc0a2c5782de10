"""IMAP extensions of issue 10 ("Must add"), spoken through Python's imaplib where it can (and
the raw-socket client of test_imap_helpers where imaplib cannot build the command):

- ESORT and CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267): SORT RETURN (...) answers with ESEARCH;
  SEARCH/SORT RETURN (UPDATE) keeps the result up to date with ESEARCH ADDTO / REMOVEFROM
  (this session's STOREs, another session's APPEND, EXPUNGE) until CANCELUPDATE; a session
  keeps a bounded number of them (NOUPDATE past it, and for keys too long to keep).
- PARTIAL (RFC 9394): SEARCH/SORT RETURN (PARTIAL a:b / -a:-b) pages and the UID FETCH PARTIAL
  modifier; hostile ranges (0, *, mixed signs, beyond 32 bits) are BAD.
- CATENATE (RFC 4469): APPEND puts a message together from TEXT literals and URLs (RFC 5092) of
  messages and parts in the same account; a URL of another user's mailbox, of a part or message
  that does not exist, with a wrong UIDVALIDITY or URLAUTH is NO [BADURL] and, as for
  MULTIAPPEND, nothing is stored; bad syntax (nesting, empty lists, too many parts) is BAD; a
  result over message_size_limit is NO [TOOBIG].
- NOTIFY (RFC 5465): STATUS of watched mailboxes, EXISTS/FETCH/EXPUNGE of the selected one and
  LIST for created, deleted and (un)subscribed mailboxes arrive without any command; NOTIFY
  NONE stops them; unsupported events are [BADEVENT], malformed or oversized sets BAD.
"""
import imaplib
import re

import pytest

from test_imap_helpers import (Lit, _no_crash, append, clients, imaplib_login, message,  # noqa: F401
                               quote, session, srv, user)

imaplib.Commands.setdefault("CANCELUPDATE", ("SELECTED",))

DATES = ['"01-Jan-2024 10:00:00 +0000"', '"02-Jan-2024 10:00:00 +0000"',
         '"03-Jan-2024 10:00:00 +0000"', '"04-Jan-2024 10:00:00 +0000"',
         '"05-Jan-2024 10:00:00 +0000"']


def fill(m, subjects, flags=None):
    """APPEND one message per subject to INBOX, INTERNALDATEs increasing; then SELECT INBOX."""
    for i, subj in enumerate(subjects):
        typ, _ = m.append("INBOX", flags, DATES[i % len(DATES)],
                          message(subj).encode())
        assert typ == "OK"
    typ, _ = m.select("INBOX")
    assert typ == "OK"


def esearch(m, typ_dat=None):
    """The untagged ESEARCH lines collected so far (and forget them), as str."""
    got = m.untagged_responses.pop("ESEARCH", [])
    return [g.decode() if isinstance(g, bytes) else str(g) for g in got if g is not None]


def cmd(m, name, *args):
    """Run a command through imaplib; returns (status, tagged text)."""
    try:
        typ, dat = m._simple_command(name, *args)
    except m.error as e:
        return "BAD", str(e)
    return typ, b" ".join(d for d in dat if isinstance(d, bytes)).decode()


@pytest.fixture
def im(srv, user):
    m = imaplib_login(srv, user, "imaps")
    yield m
    try:
        m.logout()
    except Exception:
        pass


def test_capabilities_announce_esort_and_context(im):
    typ, dat = im.capability()
    caps = dat[0].decode().upper().split()
    for c in ("ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT"):
        assert c in caps, caps


def test_esort_return_min_max_count_all_in_sort_order(im):
    fill(im, ["a", "b", "c", "d", "e"])
    esearch(im)
    typ, _ = cmd(im, "SORT", "RETURN", "(MIN MAX COUNT ALL)", "(REVERSE ARRIVAL)", "US-ASCII",
                 "ALL")
    assert typ == "OK"
    got = esearch(im)
    assert len(got) == 1, got
    tag = re.match(r'\(TAG "([^"]+)"\)', got[0]).group(1)
    # MIN and MAX are the first and last in sort order, ALL keeps the sort order
    assert got[0] == '(TAG "%s") MIN 5 MAX 1 COUNT 5 ALL 5,4,3,2,1' % tag, got
    typ, _ = cmd(im, "UID", "SORT", "RETURN", "(COUNT)", "(ARRIVAL)", "UTF-8", "2:4")
    assert typ == "OK"
    assert re.fullmatch(r'\(TAG "[^"]+"\) UID COUNT 3', esearch(im)[0])
    # without RETURN the answer stays a plain SORT
    typ, dat = im.sort("(ARRIVAL)", "US-ASCII", "ALL")
    assert typ == "OK" and dat == [b"1 2 3 4 5"], dat
    assert esearch(im) == []
    # RETURN () is ALL
    typ, _ = cmd(im, "SORT", "RETURN", "()", "(SUBJECT)", "US-ASCII", "ALL")
    assert typ == "OK" and esearch(im)[0].endswith(" ALL 1:5")
    for bad in (("(SAVE)",), ("(BOGUS)",), ("(UPDATE SAVE)",)):
        typ, _ = cmd(im, "SORT", "RETURN", *bad, "(ARRIVAL)", "US-ASCII", "ALL")
        assert typ == "BAD", bad


def test_search_update_follows_store_append_and_expunge(srv, user, im, clients):
    fill(im, ["one", "two", "three", "four", "five"])
    esearch(im)
    typ, _ = cmd(im, "SEARCH", "RETURN", "(UPDATE)", "SEEN")
    assert typ == "OK"
    first = esearch(im)
    assert len(first) == 1 and "ALL" not in first[0], first   # nothing is seen yet
    tag = re.match(r'\(TAG "([^"]+)"\)', first[0]).group(1)
    im.store("1,2,4", "+FLAGS", "\\Seen")
    assert esearch(im) == ['(TAG "%s") ADDTO (0 1:2,4)' % tag]
    im.store("1", "-FLAGS", "\\Seen")
    assert esearch(im) == ['(TAG "%s") REMOVEFROM (0 1)' % tag]
    # a STORE that changes nothing the search looks at says nothing
    im.store("3", "+FLAGS", "\\Flagged")
    assert esearch(im) == []
    # another session appends a seen message: the NOOP that reports it reports ADDTO too
    other = session(srv, user, "imaps", clients)
    append(other, "INBOX", message("six"), flags="\\Seen")
    im.noop()
    assert esearch(im) == ['(TAG "%s") ADDTO (0 6)' % tag]
    # EXPUNGE of message 2 (in the result): REMOVEFROM names it by its number before it goes
    im.store("2", "+FLAGS", "\\Deleted")
    esearch(im)
    typ, _ = cmd(im, "EXPUNGE")
    assert typ == "OK"
    assert esearch(im) == ['(TAG "%s") REMOVEFROM (0 2)' % tag]
    # after CANCELUPDATE nothing more
    typ, _ = cmd(im, "CANCELUPDATE", quote(tag))
    assert typ == "OK"
    im.store("1", "+FLAGS", "\\Seen")
    assert esearch(im) == []


def test_uid_search_update_reports_uids(srv, user, im, clients):
    fill(im, ["one", "two", "three"])
    typ, dat = im.uid("SEARCH", "ALL")
    uids = [int(x) for x in dat[0].split()]
    esearch(im)
    typ, _ = cmd(im, "UID", "SEARCH", "RETURN", "(UPDATE ALL)", "UNSEEN")
    assert typ == "OK"
    tag = re.match(r'\(TAG "([^"]+)"\)', esearch(im)[0]).group(1)
    im.store("2", "+FLAGS", "\\Seen")
    assert esearch(im) == ['(TAG "%s") UID REMOVEFROM (0 %d)' % (tag, uids[1])]
    im.store("3", "+FLAGS", "\\Deleted")
    im.expunge()
    assert esearch(im) == ['(TAG "%s") UID REMOVEFROM (0 %d)' % (tag, uids[2])]


def test_sort_update_gives_positions(srv, user, im, clients):
    fill(im, ["bravo", "delta"])
    esearch(im)
    typ, _ = cmd(im, "SORT", "RETURN", "(UPDATE ALL)", "(SUBJECT)", "US-ASCII", "ALL")
    assert typ == "OK"
    got = esearch(im)
    tag = re.match(r'\(TAG "([^"]+)"\)', got[0]).group(1)
    assert got[0].endswith("ALL 1:2"), got
    other = session(srv, user, "imaps", clients)
    append(other, "INBOX", message("charlie"))
    append(other, "INBOX", message("alpha"))
    im.noop()
    # "alpha" (message 4) goes first, "charlie" (message 3) third in subject order
    assert esearch(im) == ['(TAG "%s") ADDTO (1 4 3 3)' % tag]
    im.store("1", "+FLAGS", "\\Deleted")
    im.expunge()
    # bravo was second in the sorted result
    assert esearch(im) == ['(TAG "%s") REMOVEFROM (2 1)' % tag]


def test_update_contexts_are_bounded(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    append(c, "INBOX", message("x"))
    c.ok("SELECT INBOX")
    for i in range(10):
        r = c.ok("SEARCH RETURN (UPDATE) ALL", tag="u%d" % i)
        assert "NOUPDATE" not in r.text, c.dialogue()
    # the eleventh is answered but not kept
    r = c.ok("SEARCH RETURN (UPDATE) ALL", tag="u10")
    assert '[NOUPDATE "u10"]' in r.text, c.dialogue()
    # keys too long to keep (a 70 000-octet BODY string): answered, not kept
    c.ok("CANCELUPDATE \"u0\"")
    r = c.ok("SEARCH RETURN (UPDATE) BODY", Lit(b"z" * 70000), tag="big")
    assert '[NOUPDATE "big"]' in r.text, c.dialogue()
    # UPDATE and SAVE do not go together; unknown tags are fine to cancel
    c.expect("BAD", "SEARCH RETURN (UPDATE SAVE) ALL")
    c.ok('CANCELUPDATE "nosuch" "u1"')
    # the kept ones follow a change; the cancelled u0 and u1 and the refused u10 do not
    r = c.ok("STORE 1 +FLAGS (\\Deleted)")
    r = c.ok("EXPUNGE")
    said = b"".join(r.untagged)
    for i in range(2, 10):
        assert b'(TAG "u%d") REMOVEFROM (0 1)' % i in said, c.dialogue()
    for t in (b"u0", b"u1", b"u10", b"big"):
        assert b'(TAG "%s")' % t not in said, c.dialogue()
    c.expect("BAD", "CANCELUPDATE")
    assert c.alive()


# ------------------------------------------------------------------ PARTIAL (RFC 9394)

def test_partial_capability_and_search_pages(im):
    typ, dat = im.capability()
    assert "PARTIAL" in dat[0].decode().upper().split()
    fill(im, ["a", "b", "c", "d", "e"])
    esearch(im)

    def part(*args):
        typ, _ = cmd(im, *args)
        assert typ == "OK", args
        got = esearch(im)
        assert len(got) == 1, got
        return got[0].split(") ", 1)[1]

    assert part("SEARCH", "RETURN", "(PARTIAL 1:2)", "ALL") == "PARTIAL (1:2 1:2)"
    # the last two, counted from the end; a range given backwards is the same range
    assert part("SEARCH", "RETURN", "(PARTIAL -1:-2)", "ALL") == "PARTIAL (-1:-2 4:5)"
    assert part("SEARCH", "RETURN", "(PARTIAL -2:-1)", "ALL") == "PARTIAL (-1:-2 4:5)"
    # beyond the end: NIL; the largest range allowed: everything, with COUNT of all results
    assert part("SEARCH", "RETURN", "(PARTIAL 6:10)", "ALL") == "PARTIAL (6:10 NIL)"
    assert part("SEARCH", "RETURN", "(PARTIAL -6:-4294967295)", "ALL") == \
        "PARTIAL (-6:-4294967295 NIL)"
    assert part("SEARCH", "RETURN", "(COUNT PARTIAL 1:4294967295)", "2:5") == \
        "COUNT 4 PARTIAL (1:4294967295 2:5)"
    # SORT pages follow the sort order
    assert part("SORT", "RETURN", "(PARTIAL -1:-3)", "(REVERSE ARRIVAL)", "US-ASCII", "ALL") == \
        "PARTIAL (-1:-3 3,2,1)"
    # SAVE keeps the page
    assert part("SEARCH", "RETURN", "(SAVE PARTIAL 2:3)", "ALL") == "PARTIAL (2:3 2:3)"
    typ, dat = im.search(None, "$")
    assert dat == [b"2 3"], dat
    # hostile ranges: zero, *, mixed signs, beyond 32 bits, missing, with ALL
    for bad in ("(PARTIAL 0:5)", "(PARTIAL 1:*)", "(PARTIAL -1:5)", "(PARTIAL 1:4294967296)",
                "(PARTIAL 99999999999999999999:1)", "(PARTIAL)", "(PARTIAL 1)",
                "(ALL PARTIAL 1:2)", "(PARTIAL 1:2 PARTIAL 3:4 x)"):
        typ, _ = cmd(im, "SEARCH", "RETURN", bad, "ALL")
        assert typ == "BAD", bad


def test_partial_uid_fetch_modifier(im):
    fill(im, ["a", "b", "c", "d", "e"])
    typ, dat = im.uid("SEARCH", "ALL")
    uids = [int(x) for x in dat[0].split()]
    typ, dat = im.uid("FETCH", "1:*", "(FLAGS) (PARTIAL -1:-2)")
    assert typ == "OK"
    got = sorted(int(re.search(rb"UID (\d+)", d).group(1)) for d in dat if isinstance(d, bytes))
    assert got == uids[3:], dat
    typ, dat = im.uid("FETCH", "1:*", "(FLAGS) (PARTIAL 2:3)")
    got = sorted(int(re.search(rb"UID (\d+)", d).group(1)) for d in dat if isinstance(d, bytes))
    assert got == uids[1:3], dat
    # a huge page of a small set is just the set
    typ, dat = im.uid("FETCH", "%d:%d" % (uids[0], uids[1]), "(FLAGS) (PARTIAL 1:4294967295)")
    assert len([d for d in dat if d]) == 2, dat
    # with CHANGEDSINCE the page counts the changed messages only
    typ, dat = im.uid("FETCH", "1:*", "(MODSEQ)")
    before = max(int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", b" ".join(
        d for d in dat if isinstance(d, bytes))))
    im.store("2,4", "+FLAGS", "\\Flagged")
    typ, dat = im.uid("FETCH", "1:*", "(UID) (CHANGEDSINCE %d PARTIAL -1:-1)" % before)
    assert typ == "OK"
    got = [int(re.search(rb"UID (\d+)", d).group(1)) for d in dat if isinstance(d, bytes)]
    assert got == [uids[3]], dat
    typ, dat = im.uid("FETCH", "1:*", "(UID) (PARTIAL 1:1 CHANGEDSINCE %d)" % before)
    got = [int(re.search(rb"UID (\d+)", d).group(1)) for d in dat if isinstance(d, bytes)]
    assert got == [uids[1]], dat
    for bad in ("(PARTIAL 0:1)", "(PARTIAL *:1)", "(PARTIAL)", "(BOGUS 1)"):
        with pytest.raises(imaplib.IMAP4.error):
            im.uid("FETCH", "1:*", "(FLAGS) " + bad)


# ------------------------------------------------------------------ CATENATE (RFC 4469)

from test_imap_helpers import (Imap, log_bytes, make_server, new_user,  # noqa: E402
                               sessions_at_rest, wait_until)


def cat_cmd(c, *parts, status=None):
    """Send one command built from parts exactly as given (no spaces added; Lit parts become
    LITERAL+ {n+} literals) and read its completion; with status, check it."""
    tag = c.next_tag()
    data = tag.encode() + b" "
    for p in parts:
        if isinstance(p, Lit):
            data += b"{%d+}\r\n" % len(p) + bytes(p)
        else:
            data += p.encode() if isinstance(p, str) else p
    c.send(data + b"\r\n")
    r = c.collect(tag)
    if status:
        assert r.status == status, "expected %s, got %s %s\n%s" % (status, r.status, r.text,
                                                                  c.dialogue())
    return r


def body_of(c, seq):
    """BODY[] of message seq of the selected mailbox, as bytes."""
    r = c.ok("FETCH %s BODY.PEEK[]" % seq)
    for line in r.untagged:
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", line)
        if m:
            return line[m.end():m.end() + int(m.group(1))]
    raise AssertionError(c.dialogue())


def count(c, box="INBOX"):
    r = c.ok("STATUS", quote(box), "(MESSAGES)")
    return int(re.search(rb"MESSAGES (\d+)", b"".join(r.untagged)).group(1))


SRC = (b"From: src@example.test\r\nSubject: source\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
       b"--XX\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
       b"--XX\r\nContent-Type: text/plain\r\n\r\npart two\r\n--XX--\r\n")


@pytest.fixture
def cat(srv, user, clients):
    """A session with a source message (UID in .src_uid) in a mailbox named "Src Box"."""
    c = session(srv, user, "imaps", clients)
    c.ok('CREATE "Src Box"')
    c.src_uid = append(c, "Src Box", SRC)
    c.user = user
    return c


def test_catenate_text_and_url_parts(cat):
    c = cat
    assert "CATENATE" in c.caps()
    u = c.src_uid
    r = cat_cmd(c, "APPEND INBOX (\\Seen) CATENATE (URL \"/Src%%20Box/;UID=%d/;SECTION=HEADER\" "
                "TEXT " % u, Lit(b"new body\r\n"), ")", status="OK")
    assert "[APPENDUID" in r.text
    # the absolute form with this session's own user, a UIDVALIDITY, a part and a byte range
    r = c.ok("STATUS \"Src Box\" (UIDVALIDITY)")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(r.untagged)).group(1))
    cat_cmd(c, "APPEND INBOX CATENATE (TEXT ", Lit(b"Subject: parts\r\n\r\n"),
            ' URL "imap://%s@mail.example.test/Src%%20Box;UIDVALIDITY=%d/;UID=%d/;SECTION=2"'
            % (c.user.replace("@", "%40"), uv, u),
            ' URL "/Src%%20Box/;UID=%d/;SECTION=1/;PARTIAL=5.3")' % u, status="OK")
    # MULTIAPPEND mixing a CATENATE and a plain literal
    cat_cmd(c, "APPEND INBOX CATENATE (URL \"/Src%%20Box/;UID=%d\") " % u,
            Lit(b"Subject: plain\r\n\r\nx\r\n"), status="OK")
    c.ok("SELECT INBOX")
    hdr = SRC.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert body_of(c, 1) == hdr + b"new body\r\n"
    assert body_of(c, 2) == b"Subject: parts\r\n\r\npart twoone"
    assert body_of(c, 3) == SRC
    assert body_of(c, 4) == b"Subject: plain\r\n\r\nx\r\n"
    r = c.ok("FETCH 1 FLAGS")
    assert b"\\Seen" in b"".join(r.untagged)
    # relative to the selected mailbox
    c.ok("APPEND INBOX CATENATE (URL \";UID=%d/;SECTION=TEXT\")" % 4)
    assert body_of(c, 5) == b"x\r\n"


def test_catenate_bad_urls_store_nothing(srv, cat, clients):
    c = cat
    assert "CATENATE" in c.caps()
    u = c.src_uid
    # another user's mailbox with the same names and UIDs
    other = new_user(srv)
    o = session(srv, other, "imaps", clients)
    o.ok('CREATE "Src Box"')
    append(o, "Src Box", SRC)
    before = count(c)
    bad = [
        'imap://%s@mail.example.test/Src%%20Box/;UID=%d' % (other.replace("@", "%40"), u),
        '/Src%%20Box/;UID=%d/;SECTION=7' % u,                 # no such part
        '/Src%%20Box/;UID=%d/;SECTION=1.2.3.4' % u,
        '/Src%%20Box/;UID=%d' % (u + 1),                      # no such message
        '/Src%%20Box;UIDVALIDITY=1/;UID=%d' % u,              # wrong UIDVALIDITY
        '/Nowhere/;UID=%d' % u,
        '/Src%%20Box/;UID=%d;URLAUTH=anonymous:internal:abc' % u,
        '/../Src%%20Box/;UID=%d' % u,
        '/Src%%2/;UID=%d' % u, '/Src%%00Box/;UID=%d' % u,
        'http://example.test/', '/Src%20Box/;UID=0', '/Src%20Box/;UID=99999999999',
        '/Src%%20Box/;UID=%d/;SECTION=HEADER]\x01' % u,
    ]
    for url in bad:
        # first message fine, the second names a bad URL: neither is stored
        r = cat_cmd(c, "APPEND INBOX CATENATE (TEXT ", Lit(b"Subject: a\r\n\r\nok\r\n"),
                    ") CATENATE (TEXT ", Lit(b"Subject: b\r\n\r\n"), " URL ", Lit(url.encode()),
                    ")")
        assert r.status == "NO" and "[BADURL " in r.text, (url, c.dialogue())
        assert "]\x01" not in r.text and "\x01" not in r.text
        assert count(c) == before, url
    # a mailbox that does not exist: TRYCREATE, before any URL is looked at
    r = c.cmd("APPEND Nonexistent CATENATE (URL \"/Src%%20Box/;UID=%d\")" % u)
    assert r.status == "NO" and "[TRYCREATE]" in r.text
    assert c.alive()


def test_catenate_hostile_syntax(srv, cat, clients):
    c = cat
    assert "CATENATE" in c.caps()
    u = c.src_uid
    before = count(c)
    for parts in (
            ["CATENATE ()"],
            ["CATENATE (TEXT)"],
            ['CATENATE (TEXT "quoted is not a literal")'],
            ["CATENATE (TEXT (URL \"/Src%%20Box/;UID=%d\"))" % u],   # nesting
            ["CATENATE ((TEXT ", Lit(b"x"), "))"],
            ["CATENATE (BOGUS ", Lit(b"x"), ")"],
            ["CATENATE (URL NIL)"],
            ["CATENATE"],
            ["CATENATE (" + " ".join(['URL "/Src%%20Box/;UID=%d"' % u] * 101) + ")"]):
        r = cat_cmd(c, "APPEND INBOX ", *parts)
        assert r.status == "BAD", (parts[0][:80], c.dialogue())
    assert c.alive()
    c = session(srv, c.user, "imaps", clients)   # nine BADs: near max_errors
    # NUL in a TEXT literal that is not a literal8 (the parser already refuses it)
    r = cat_cmd(c, "APPEND INBOX CATENATE (TEXT ", Lit(b"Subject: n\r\n\r\na\x00b"), ")")
    assert r.status == "BAD", c.dialogue()
    # a message that is empty once put together
    r = cat_cmd(c, "APPEND INBOX CATENATE (TEXT ", Lit(b""), ")")
    assert r.status == "NO", c.dialogue()
    assert count(c) == before
    c.ok("NOOP")


@pytest.fixture(scope="module")
def small():
    """A server whose message_size_limit is 1 MB."""
    s = make_server(extra_conf="message_size_limit = 1M\n")
    yield s
    s.stop()


def test_catenate_too_big(small):
    user = new_user(small)
    c = Imap(small, "imaps")
    try:
        c.login(user)
        big = b"Subject: big\r\n\r\n" + b"y" * 400000 + b"\r\n"
        u = append(c, "INBOX", big)
        # three URL parts of a 400 KB message make 1.2 MB: over the 1 MB limit
        r = c.cmd("APPEND INBOX CATENATE (" + " ".join(['URL "/INBOX/;UID=%d"' % u] * 3) + ")")
        assert r.status == "NO" and "[TOOBIG]" in r.text, c.dialogue()
        # two fit
        c.ok("APPEND INBOX CATENATE (" + " ".join(['URL "/INBOX/;UID=%d"' % u] * 2) + ")")
        # a TEXT literal over the limit, sent at once as {n+} (cat_cmd): BAD [TOOBIG] (RFC 7888
        # section 4: a non-synchronizing literal cannot be refused before it comes); the data is
        # dropped and the session goes on
        r = cat_cmd(c, "APPEND INBOX CATENATE (TEXT ", Lit(b"z" * (1024 * 1024 + 1)), ")")
        assert r.status == "BAD" and r.text.startswith("[TOOBIG]"), c.dialogue()
        c.ok("NOOP")
        assert count(c) == 2
    finally:
        c.close()


# ------------------------------------------------------------------ NOTIFY (RFC 5465)

import socket  # noqa: E402
import time  # noqa: E402


def unsolicited(c, want, timeout=10.0):
    """Read untagged responses, without sending any command, until one matches the regex want
    (bytes); returns every response read. Fails after timeout."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            r = c.read_response(max(0.05, end - time.monotonic()))
        except socket.timeout:
            break
        got.append(r)
        if re.search(want, r):
            return got
    raise AssertionError("no %r within %.0f s; got %r\n%s" % (want, timeout, got, c.dialogue()))


def quiet(c, seconds=1.5):
    """Nothing arrives unasked for this long."""
    try:
        r = c.read_response(seconds)
    except socket.timeout:
        return
    raise AssertionError("unexpected %r\n%s" % (r, c.dialogue()))


def test_notify_status_of_other_mailboxes(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    assert "NOTIFY" in c.caps()
    c.ok('CREATE "Other"')
    o = session(srv, user, "imaps", clients)
    append(o, "Other", message("one"))
    r = c.ok("NOTIFY SET STATUS (MAILBOXES Other (MessageNew MessageExpunge))")
    st = [x for x in r.untagged if x.startswith(b"* STATUS")]
    assert len(st) == 1 and re.match(rb'\* STATUS "?Other"? \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)',
                                     st[0]), c.dialogue()
    # another session delivers: told at once, no command needed
    append(o, "Other", message("two"))
    unsolicited(c, rb"\* STATUS \"?Other\"? \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+\)")
    # a mailbox no filter names stays silent; NOTIFY NONE ends it all
    append(o, "INBOX", message("three"))
    quiet(c)
    c.ok("NOTIFY NONE")
    append(o, "Other", message("four"))
    quiet(c)
    c.ok("NOOP")


def test_notify_selected_mailbox_and_names(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    c.ok("SELECT INBOX")
    c.ok("NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange)) "
         "(PERSONAL (MailboxName SubscriptionChange))")
    o = session(srv, user, "imaps", clients)
    append(o, "INBOX", message("new one"))
    unsolicited(c, rb"\* 1 EXISTS")
    o.ok("SELECT INBOX")
    o.ok("STORE 1 +FLAGS (\\Flagged)")
    unsolicited(c, rb"\* 1 FETCH \(.*FLAGS \(.*\\Flagged")
    o.ok("STORE 1 +FLAGS (\\Deleted)")
    o.ok("EXPUNGE")
    unsolicited(c, rb"\* 1 EXPUNGE")
    o.ok('CREATE "Fresh"')
    unsolicited(c, rb'\* LIST \(\) "/" "?Fresh"?')
    o.ok('SUBSCRIBE "Fresh"')
    unsolicited(c, rb'\* LIST \(\\Subscribed\) "/" "?Fresh"?')
    o.ok('DELETE "Fresh"')
    unsolicited(c, rb'\* LIST \(\\NonExistent\) "/" "?Fresh"?')
    # IDLE still works, and NOTIFY goes on listening after DONE
    c.send(b"i1 IDLE\r\n")
    assert c.read_response().startswith(b"+")
    append(o, "INBOX", message("during idle"))
    unsolicited(c, rb"\* 1 EXISTS")
    c.send(b"DONE\r\n")
    unsolicited(c, rb"i1 OK")
    append(o, "INBOX", message("after idle"))
    unsolicited(c, rb"\* 2 EXISTS")


def test_notify_message_new_fetch_attributes(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    c.ok("SELECT INBOX")
    c.expect("BAD", "NOTIFY SET (SELECTED (MessageNew (BODY.PEEK[HEADER]) MessageExpunge))")
    c.ok("NOTIFY SET (SELECTED (MessageNew (UID FLAGS RFC822.SIZE INTERNALDATE) "
         "MessageExpunge))")
    o = session(srv, user, "imaps", clients)
    uid = append(o, "INBOX", message("fetched"), flags="\\Seen", date="07-Jul-2025 10:00:00 +0000")
    got = unsolicited(c, rb"\* 1 FETCH")
    line = [g for g in got if g.startswith(b"* 1 FETCH")][0]
    assert re.match(rb'\* 1 FETCH \(UID %d FLAGS \(\\Seen( \\Recent)?\) RFC822.SIZE \d+ '
                    rb'INTERNALDATE "07-Jul-2025 10:00:00 \+0000"\)\r\n' % uid, line), got


def test_notify_session_at_rest_still_hears():
    """A NOTIFY session that let go of its index (imap_rest_after) is woken by a change."""
    s = make_server(extra_conf="imap_rest_after = 1s\nlog_debug = yes\n")
    try:
        user = new_user(s)
        mark = len(log_bytes(s))
        c, o = Imap(s, "imaps"), Imap(s, "imaps")
        c.login(user)
        o.login(user)
        c.ok('CREATE "Watched"')
        c.ok("NOTIFY SET (MAILBOXES Watched (MessageNew MessageExpunge))")
        wait_until(lambda: sessions_at_rest(s, mark, 2), 8, 0.1, "both sessions to rest")
        append(o, "Watched", message("late"))
        unsolicited(c, rb'\* STATUS "?Watched"? \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)')
        wait_until(lambda: sessions_at_rest(s, mark, 2), 8, 0.1, "both sessions to rest again")
        append(o, "Watched", message("later"))
        unsolicited(c, rb'\* STATUS "?Watched"? \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+\)')
        c.close()
        o.close()
    finally:
        s.stop()


def test_notify_hostile_input(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    r = c.cmd("NOTIFY SET (PERSONAL (AnnotationChange))")
    assert r.status == "NO" and "[BADEVENT" in r.text, c.dialogue()
    for bad in ("NOTIFY", "NOTIFY SET", "NOTIFY BOGUS", "NOTIFY SET (PERSONAL (Bogus))",
                "NOTIFY SET (NOWHERE (MessageNew))", "NOTIFY SET (SELECTED (MailboxName))",
                "NOTIFY SET (PERSONAL (MessageNew (UID FLAGS)))",
                "NOTIFY SET (MAILBOXES (" + " ".join("b%d" % i for i in range(101)) +
                ") (MessageNew))"):
        c.expect("BAD", bad)
    c = session(srv, user, "imaps", clients)
    for bad in ("NOTIFY SET " + " ".join(["(PERSONAL (MessageNew))"] * 17),
                "NOTIFY SET (SUBTREE ((nested)) (MessageNew))",
                "NOTIFY SET (MAILBOXES)", "NOTIFY SET (PERSONAL)", "NOTIFY SET STATUS"):
        c.expect("BAD", bad)
    c.ok("NOTIFY SET (INBOXES NONE)")
    c.ok("NOTIFY NONE")
    assert c.alive()
