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
    append(c, "INBOX",
           "From: <user-from (comment)@ (comment) domain.org>\r\nSubject: a\r\n\r\nx\r\n")
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


SORT_SUBJECTS = ["a", "C", "b", "_", "[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b (a)",
                 "Re: [FWD: c]", "[xyz]", None, "=?iso-8859-1?q?_?=", "Re: =?utf-8?q?b?=",
                 "=?iso-8859-1?q?RE:_C?=", "=?us-ascii?b?UmU6IGM=?=", "Ad: Re: Ad: Re: Ad: x",
                 "re: [fwd: [fwd: re: [fwd: babylon]]]"]


def test_sort_subject_uses_base_subject(srv, user, clients):  # noqa: F811
    """RFC 5256 2.1 base subjects, compared upper-cased (i;ascii-casemap); equal ones keep the
    sequence order, also under REVERSE of another key."""
    c = login(srv, user, clients)
    for i, sub in enumerate(SORT_SUBJECTS):
        hdr = "From: a@b.test\r\n" + ("Subject: %s\r\n" % sub if sub is not None else "")
        append(c, "INBOX", hdr + "\r\n" + "x" * (100 * (i + 1)) + "\r\n")
    c.ok("SELECT INBOX")
    got = c.ok("SORT (SUBJECT) US-ASCII ALL").of("SORT")[0]
    assert got == "9 10 1 14 3 5 11 6 15 2 7 12 13 8 4".split(), c.dialogue()
    got = c.ok("SORT (REVERSE SUBJECT) US-ASCII ALL").of("SORT")[0]
    assert got == "4 8 2 7 12 13 15 6 3 5 11 14 1 9 10".split(), c.dialogue()
    got = c.ok("SORT (SUBJECT REVERSE SIZE) US-ASCII ALL").of("SORT")[0]
    assert got == "10 9 1 14 11 5 3 6 15 13 12 7 2 8 4".split(), c.dialogue()


def test_sort_cc_group_and_reverse_ties(srv, user, clients):  # noqa: F811
    """A group's name is the sort key of a Cc that starts with a group; REVERSE turns only its
    own key around, ties stay in sequence order."""
    c = login(srv, user, clients)
    for i, cc in enumerate(("user2@domain2.org (foo bar)", "user2: blah@domain1.org;",
                            "user1@domain1.org")):
        append(c, "INBOX", "From: a@b.test\r\nCc: %s\r\n\r\nx\r\n" % cc,
               date="22-Feb-2008 0%d:06:23 +0000" % i)
    c.ok("SELECT INBOX")
    assert c.ok("SORT (CC) US-ASCII ALL").of("SORT")[0] == ["3", "1", "2"], c.dialogue()
    assert c.ok("SORT (REVERSE CC) US-ASCII ALL").of("SORT")[0] == ["1", "2", "3"], c.dialogue()
    assert c.ok("SORT (CC REVERSE ARRIVAL) US-ASCII ALL").of("SORT")[0] == ["3", "2", "1"], \
        c.dialogue()


def test_thread_references_guessed_parent_dropped(srv, user, clients):  # noqa: F811
    """RFC 5256 4.1 step 1B: a message's own References replace a parent guessed from another
    message's References, even when the new link is refused because it would make a loop."""
    c = login(srv, user, clients)
    for mid, refs, idate in (("<a@b>", None, "17:06:23"), ("<b@b>", "<a@b> <c@b>", "15:06:23"),
                             ("<c@b>", "<b@b>", "16:06:25")):
        h = "Message-ID: %s\r\n" % mid + ("References: %s\r\n" % refs if refs else "")
        append(c, "INBOX", h + "\r\nbody\r\n", date="22-Feb-2008 %s +0000" % idate)
    c.ok("SELECT INBOX")
    r = c.ok("THREAD REFERENCES US-ASCII ALL")
    assert b"* THREAD (3 2)(1)\r\n" in r.untagged, c.dialogue()


def test_thread_dummy_ties_sort_by_first_child(srv, user, clients):  # noqa: F811
    """An empty container sorts by its first child's date and, on a tie, its sequence."""
    c = login(srv, user, clients)
    for mid, irt in (("<3@b>", "<1@b>"), ("<4@b>", "<2@b>"), ("<5@b>", "<2@b>")):
        append(c, "INBOX", "Message-Id: %s\r\nIn-Reply-To: %s\r\n\r\nbody\r\n" % (mid, irt),
               date="22-Feb-2008 15:06:23 +0000")
    c.ok("SELECT INBOX")
    r = c.ok("THREAD REFERENCES US-ASCII ALL")
    assert b"* THREAD (1)((2)(3))\r\n" in r.untagged, c.dialogue()


def test_thread_orderedsubject_dates_in_utc(srv, user, clients):  # noqa: F811
    """ORDEREDSUBJECT compares sent dates in UTC; a message without Date: uses INTERNALDATE."""
    c = login(srv, user, clients)
    dated = [("a", "22:00:10"), ("b", "22:00:09"), ("a", "22:00:08"), ("b", "22:00:07")]
    for sub, t in dated:
        append(c, "INBOX", "Subject: %s\r\nDate: Fri, 22 Feb 2008 %s +0200\r\n\r\nx\r\n" % (sub, t),
               date="22-Feb-2008 23:00:01 +0200")
    for sub, t in (("a", "22:00:30"), ("b", "22:00:29"), ("a", "22:00:28"), ("b", "22:00:27")):
        append(c, "INBOX", "Subject: %s\r\n\r\nx\r\n" % sub, date="22-Feb-2008 %s +0200" % t)
    c.ok("SELECT INBOX")
    r = c.ok("THREAD ORDEREDSUBJECT US-ASCII ALL")
    assert b"* THREAD (4 (2)(8)(6))(3 (1)(7)(5))\r\n" in r.untagged, c.dialogue()


def test_thread_orderedsubject_base_subjects(srv, user, clients):  # noqa: F811
    """Base subjects as in SORT; messages without a subject are one thread as well."""
    c = login(srv, user, clients)
    for sub in SORT_SUBJECTS:
        hdr = "From: a@b.test\r\n" + ("Subject: %s\r\n" % sub if sub is not None else "")
        append(c, "INBOX", hdr + "\r\nx\r\n", date="22-Feb-2008 23:00:00 +0200")
    c.ok("SELECT INBOX")
    r = c.ok("THREAD ORDEREDSUBJECT US-ASCII ALL")
    assert b"* THREAD (1)(2 (7)(12)(13))(3 (5)(11))(4)(6)(8)(9 10)(14)(15)\r\n" in r.untagged, \
        c.dialogue()


def test_uidvalidity_changes_when_mailbox_is_recreated(srv, user, clients):  # noqa: F811
    """RFC 3501 2.3.1.1: a mailbox deleted and created again under the same name (here within
    the same second) must not reuse its UIDVALIDITY."""
    c = login(srv, user, clients)
    seen = set()
    for _ in range(3):
        c.ok("CREATE Again")
        st = c.ok("STATUS Again (UIDVALIDITY)").of("STATUS")[0]
        seen.add(st[1][1])
        c.ok("DELETE Again")
    assert len(seen) == 3, c.dialogue()


def _flags_before_fetch(untagged, keyword):
    """Index of the untagged FLAGS naming keyword, and of the first FETCH that uses it."""
    flags_at = fetch_at = None
    for i, u in enumerate(untagged):
        if flags_at is None and u.startswith(b"* FLAGS (") and keyword in u:
            flags_at = i
        if fetch_at is None and b" FETCH (" in u and keyword in u:
            fetch_at = i
    return flags_at, fetch_at


def test_store_nil_is_a_keyword(srv, user, clients):  # noqa: F811
    """NIL in a flag position is the atom NIL (a keyword), not a syntax error."""
    c = login(srv, user, clients)
    append(c, "INBOX", "Subject: x\r\n\r\nbody\r\n")
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS NIL")
    r = c.ok("FETCH 1 FLAGS")
    assert r.untagged[-1] == b"* 1 FETCH (FLAGS (\\Recent NIL))\r\n", c.dialogue()


def test_new_keyword_is_announced_before_use(srv, user, clients):  # noqa: F811
    """RFC 3501 7.2.6: a keyword is in an untagged FLAGS (and PERMANENTFLAGS) before any FETCH
    shows it: in the STORE that creates it and in another session that sees the change."""
    c = login(srv, user, clients)
    append(c, "INBOX", "Subject: x\r\n\r\nbody\r\n")
    c.ok("SELECT INBOX")
    other = login(srv, user, clients, box="INBOX")
    r = c.ok("STORE 1 +FLAGS ($hello)")
    f, x = _flags_before_fetch(r.untagged, b"$hello")
    assert f is not None and x is not None and f < x, c.dialogue()
    assert any(b"PERMANENTFLAGS (" in u and b"$hello" in u for u in r.untagged), c.dialogue()
    r = other.ok("NOOP")
    f, x = _flags_before_fetch(r.untagged, b"$hello")
    assert f is not None and x is not None and f < x, other.dialogue()
    r = c.ok("STORE 1 +FLAGS ($hello)")   # known now: no second announcement
    assert not any(u.startswith(b"* FLAGS") for u in r.untagged), c.dialogue()


def test_recent_for_imap4rev1_sessions(srv, user, clients):  # noqa: F811
    """RFC 3501 2.3.2: a new message is \\Recent to exactly one session: EXAMINE and STATUS show
    it without claiming it, the first SELECT claims it (RECENT, FLAGS, SEARCH RECENT/NEW/OLD),
    later sessions see it as old; a message arriving during a session is that session's.
    IMAP4rev2 (RFC 9051) sessions never see \\Recent."""
    c = login(srv, user, clients)
    append(c, "INBOX", "Subject: 1\r\n\r\nx\r\n")
    append(c, "INBOX", "Subject: 2\r\n\r\nx\r\n", flags="\\Seen")
    r = c.ok("EXAMINE INBOX")
    assert b"* 2 RECENT\r\n" in r.untagged, c.dialogue()
    c.ok("CLOSE")
    r = c.ok("STATUS INBOX (RECENT)")
    assert r.of("STATUS")[0][1] == ["RECENT", "2"], c.dialogue()
    r = c.ok("SELECT INBOX")
    assert b"* 2 RECENT\r\n" in r.untagged, c.dialogue()
    assert c.ok("FETCH 1 FLAGS").untagged[-1] == b"* 1 FETCH (FLAGS (\\Recent))\r\n", c.dialogue()
    assert c.ok("SEARCH RECENT").of("SEARCH") == [["1", "2"]], c.dialogue()
    assert c.ok("SEARCH NEW").of("SEARCH") == [["1"]], c.dialogue()
    assert c.ok("SEARCH OLD").of("SEARCH") == [[]], c.dialogue()
    other = login(srv, user, clients)
    r = other.ok("SELECT INBOX")
    assert b"* 0 RECENT\r\n" in r.untagged, other.dialogue()
    assert other.ok("SEARCH OLD").of("SEARCH") == [["1", "2"]], other.dialogue()
    third = login(srv, user, clients)   # nothing selected: it claims nothing
    append(third, "INBOX", "Subject: 3\r\n\r\nx\r\n")
    r = c.ok("NOOP")      # c sees it first: recent to c, not to `other`
    assert b"* 3 EXISTS\r\n" in r.untagged and b"* 3 RECENT\r\n" in r.untagged, c.dialogue()
    r = other.ok("NOOP")
    # the new EXISTS comes with the RECENT count, still 0 for this session
    assert b"* 3 EXISTS\r\n" in r.untagged and b"* 0 RECENT\r\n" in r.untagged, \
        other.dialogue()
    rev2 = login(srv, user, clients)
    append(rev2, "INBOX", "Subject: 4\r\n\r\nx\r\n")
    rev2.ok("ENABLE IMAP4rev2")
    r = rev2.ok("SELECT INBOX")
    assert not any(b"RECENT" in u for u in r.untagged), rev2.dialogue()
    assert b"\\Recent" not in b"".join(rev2.ok("FETCH 1:* FLAGS").untagged), rev2.dialogue()


def test_recent_of_own_append(srv, user, clients):  # noqa: F811
    """A session that APPENDs to the mailbox it has selected read-write claims \\Recent in the
    APPEND's own commit: of its message and of any it had not seen yet (they reach it in the
    same answer); no other session sees them as recent. An EXAMINE session claims nothing."""
    c = login(srv, user, clients)
    c.ok("SELECT INBOX")
    other = login(srv, user, clients)
    append(other, "INBOX", "Subject: a\r\n\r\nx\r\n")   # nothing selected: claims nothing
    r = c.ok("APPEND INBOX", Lit(b"Subject: b\r\n\r\nx\r\n"))
    assert b"* 2 EXISTS\r\n" in r.untagged and b"* 2 RECENT\r\n" in r.untagged, c.dialogue()
    assert c.ok("SEARCH RECENT").of("SEARCH") == [["1", "2"]], c.dialogue()
    r = other.ok("SELECT INBOX")
    assert b"* 0 RECENT\r\n" in r.untagged, other.dialogue()
    ex = login(srv, user, clients)
    ex.ok("EXAMINE INBOX")
    r = ex.ok("APPEND INBOX", Lit(b"Subject: c\r\n\r\nx\r\n"))
    assert b"* 3 EXISTS\r\n" in r.untagged, ex.dialogue()
    r = c.ok("NOOP")      # c sees it first: the EXAMINE session left it unclaimed
    assert b"* 3 EXISTS\r\n" in r.untagged and b"* 3 RECENT\r\n" in r.untagged, c.dialogue()
    r = other.ok("NOOP")
    assert b"* 3 EXISTS\r\n" in r.untagged and b"* 0 RECENT\r\n" in r.untagged, \
        other.dialogue()


def test_condstore_enabled_by_fetch_modseq(srv, user, clients):  # noqa: F811
    """RFC 7162 3.1: the first FETCH MODSEQ enables CONDSTORE and reports HIGHESTMODSEQ; later
    STORE answers carry MODSEQ; ESEARCH MIN/MAX report the modseq of those messages."""
    c = login(srv, user, clients)
    for i in range(3):
        append(c, "INBOX", "Subject: %d\r\n\r\nx\r\n" % i)
    c.ok("SELECT INBOX")
    r = c.ok("FETCH 1 (MODSEQ)")
    assert any(re.match(rb"\* OK \[HIGHESTMODSEQ \d+\]", u) for u in r.untagged), c.dialogue()
    r = c.ok("FETCH 1 (MODSEQ)")      # only the first time
    assert not any(b"HIGHESTMODSEQ" in u for u in r.untagged), c.dialogue()
    ms = {}
    for n in (1, 3, 2):
        r = c.ok("STORE %d +FLAGS (\\Seen)" % n)
        m = re.search(rb"\* %d FETCH \(.*MODSEQ \((\d+)\)" % n, b"".join(r.untagged))
        assert m, c.dialogue()
        ms[n] = int(m.group(1))
    r = c.ok('SEARCH RETURN (MIN) 1:3 MODSEQ "/flags/\\\\seen" all 1')
    assert r.of("ESEARCH")[0][1:] == ["MIN", "1", "MODSEQ", str(ms[1])], c.dialogue()
    r = c.ok('SEARCH RETURN (MAX) 1:3 MODSEQ "/flags/\\\\seen" all 1')
    assert r.of("ESEARCH")[0][1:] == ["MAX", "3", "MODSEQ", str(ms[3])], c.dialogue()
    r = c.ok('SEARCH RETURN (ALL) 1:3 MODSEQ "/flags/\\\\seen" all 1')
    assert r.of("ESEARCH")[0][1:] == ["ALL", "1:3", "MODSEQ", str(ms[2])], c.dialogue()


def test_subscriptions_outlive_delete_and_lsub_parents(srv, user, clients):  # noqa: F811
    """RFC 3501 6.3.4: DELETE leaves the subscription; LIST (SUBSCRIBED) shows it \\NonExistent
    (RFC 5258); CREATE does not subscribe; LSUB "%" shows an unsubscribed parent of a subscribed
    child as \\Noselect (6.3.9); UNSUBSCRIBE takes effect at once."""
    c = login(srv, user, clients)
    before = c.ok('LSUB "" "*"').of("LSUB")   # the special-use folders of a new account
    for b in ("P", "P/kid", "Q", "Gone"):
        c.ok("CREATE %s" % b)
    assert c.ok('LSUB "" "*"').of("LSUB") == before, "CREATE subscribed\n" + c.dialogue()
    c.ok("SUBSCRIBE P/kid")
    c.ok("SUBSCRIBE Q")
    c.ok("SUBSCRIBE Gone")
    c.ok("DELETE Gone")
    r = c.ok('LIST (SUBSCRIBED) "" "*"')
    lines = [u for u in r.untagged if u.startswith(b"* LIST")]
    gone = [u for u in lines if u.rstrip().endswith(b" Gone")]
    assert gone and b"\\NonExistent" in gone[0] and b"\\Subscribed" in gone[0], c.dialogue()
    r = c.ok('LSUB "" "%"')
    lsub = {u.rsplit(b" ", 1)[1].strip(): u for u in r.untagged if u.startswith(b"* LSUB")}
    assert b"\\Noselect" in lsub[b"P"] and b"Q" in lsub and b"Gone" in lsub, c.dialogue()
    c.ok("UNSUBSCRIBE Q")
    r = c.ok('LSUB "" "%"')
    assert not any(u.rstrip().endswith(b" Q") for u in r.untagged), c.dialogue()
    c.ok("CREATE Gone")      # the old subscription applies to the new mailbox
    r = c.ok('LSUB "" "Gone"')
    assert len(r.of("LSUB")) == 1, c.dialogue()


def test_list_recursivematch_childinfo(srv, user, clients):  # noqa: F811
    """RFC 5258 3.5: an unsubscribed parent of a subscribed child is listed with CHILDINFO
    ("SUBSCRIBED") and without \\Subscribed."""
    c = login(srv, user, clients)
    c.ok("CREATE R")
    c.ok("CREATE R/kid")
    c.ok("SUBSCRIBE R/kid")
    r = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "R"')
    line = [u for u in r.untagged if u.startswith(b"* LIST")]
    assert len(line) == 1 and b'("CHILDINFO" ("SUBSCRIBED"))' in line[0], c.dialogue()
    assert b"\\Subscribed" not in line[0], c.dialogue()
