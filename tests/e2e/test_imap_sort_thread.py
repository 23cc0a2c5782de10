"""IMAP SORT, SORT=DISPLAY and THREAD (RFC 5256, RFC 5957) against answers worked out by hand.

One mailbox of nine messages exercises every step of THREAD=REFERENCES: a reply chain by
References, a reply found only by its subject, two unrelated roots with one subject (gathered
under a new empty parent, RFC 5256 4.5.C), and replies to a message we do not have (an empty
container with two children). The same mailbox has known SORT orders for each key.
"""
import re

import pytest

from test_imap_helpers import Imap, _no_crash, append, clients, srv, user  # noqa: F401


def msg(subject, mid, date, frm="Sender <sender@remote.test>", refs=None, irt=None,
        body="text\r\n", to="rcpt@example.test", cc=None):
    h = "From: %s\r\nTo: %s\r\n" % (frm, to)
    if cc:
        h += "Cc: %s\r\n" % cc
    h += "Subject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n" % (subject, date, mid)
    if refs:
        h += "References: %s\r\n" % refs
    if irt:
        h += "In-Reply-To: %s\r\n" % irt
    return h + "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body


# seq: (subject, message-id, date, from, references, in-reply-to, body size filler)
MESSAGES = [
    ("Plan", "<a@x.test>", "Thu, 01 Jan 2026 10:00:00 +0000", "Zed <zed@x.test>", None, None, 300),
    ("Re: Plan", "<b@x.test>", "Thu, 01 Jan 2026 11:00:00 +0000", "amy@x.test", "<a@x.test>",
     "<a@x.test>", 100),
    ("Lunch", "<c@x.test>", "Thu, 01 Jan 2026 12:00:00 +0000", "Bob <bob@x.test>", None, None, 500),
    ("Re: Plan", "<d@x.test>", "Thu, 01 Jan 2026 13:00:00 +0000", None,
     "<a@x.test> <b@x.test>", None, 200),
    ("Re: Lunch", "<e@x.test>", "Thu, 01 Jan 2026 14:00:00 +0000", None, None, None, 900),
    ("Report", "<f@x.test>", "Fri, 02 Jan 2026 09:00:00 +0000", None, None, None, 700),
    ("Report", "<g@x.test>", "Fri, 02 Jan 2026 10:00:00 +0000", None, None, None, 600),
    ("Re: Missing", "<h@x.test>", "Fri, 02 Jan 2026 11:00:00 +0000", None, "<zz@x.test>", None, 400),
    ("Re: Missing", "<i@x.test>", "Fri, 02 Jan 2026 12:00:00 +0000", None, "<zz@x.test>", None, 800),
]


@pytest.fixture
def box(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE T")
    # a first message, expunged, so that UIDs (2..10) differ from sequence numbers (1..9)
    append(c, "T", msg("gone", "<gone@x.test>", "Wed, 31 Dec 2025 10:00:00 +0000"))
    for i, (sub, mid, date, frm, refs, irt, size) in enumerate(MESSAGES):
        kw = {"frm": frm} if frm else {}
        # internal dates in the reverse order of the sent dates (for ARRIVAL vs DATE)
        idate = "%02d-Mar-2026 10:00:00 +0000" % (20 - i)
        append(c, "T", msg(sub, mid, date, refs=refs, irt=irt, body="x" * size + "\r\n", **kw),
               date=idate)
    c.ok("SELECT T")
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    c.ok("SELECT T")
    return c


def untagged(r, kind):
    lines = [u.decode() if isinstance(u, bytes) else u for u in r.untagged]
    lines = [l for l in lines if l.upper().startswith("* " + kind + " ") or l.upper() == "* " + kind]
    assert len(lines) == 1, lines
    return lines[0][len("* " + kind):].strip()


def nums(s):
    return [int(x) for x in s.split()] if s else []


def test_thread_references(box):
    c = box
    r = c.ok("THREAD REFERENCES UTF-8 ALL")
    # (1 2 4): a References chain; (3 5): "Re: Lunch" has no References and joins "Lunch" by
    # subject; ((6)(7)): two "Report" messages, neither a reply: a new empty parent (4.5.C);
    # ((8)(9)): replies to a message not in the mailbox. Roots by sent date (an empty
    # container takes its first child's).
    assert untagged(r, "THREAD") == "(1 2 4)(3 5)((6)(7))((8)(9))", c.dialogue()
    r = c.ok("UID THREAD REFERENCES UTF-8 ALL")
    assert untagged(r, "THREAD") == "(2 3 5)(4 6)((7)(8))((9)(10))", c.dialogue()
    # the search criteria choose the messages first
    r = c.ok('THREAD REFERENCES UTF-8 SUBJECT "plan"')
    assert untagged(r, "THREAD") == "(1 2 4)", c.dialogue()
    r = c.ok('THREAD REFERENCES UTF-8 NOT SUBJECT "plan" NOT SUBJECT "report"')
    assert untagged(r, "THREAD") == "(3 5)((8)(9))", c.dialogue()


def test_thread_orderedsubject(box):
    c = box
    r = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
    # grouped by base subject; the first message parents the others, which are siblings
    assert untagged(r, "THREAD") == "(1 (2)(4))(3 5)(6 7)(8 9)", c.dialogue()


def test_thread_errors(box):
    c = box
    c.expect("BAD", "THREAD FOO UTF-8 ALL")
    r = c.expect("NO", "THREAD REFERENCES KOI8-R ALL")
    assert r.code and r.code.startswith("BADCHARSET"), c.dialogue()


def test_sort_keys(box):
    c = box
    def sort(crit, search="ALL", uid=False):
        r = c.ok("%sSORT (%s) UTF-8 %s" % ("UID " if uid else "", crit, search))
        return nums(untagged(r, "SORT"))
    # base subjects Lunch < Missing < Plan < Report, ties by sequence number
    assert sort("SUBJECT") == [3, 5, 8, 9, 1, 2, 4, 6, 7], c.dialogue()
    assert sort("DATE") == [1, 2, 3, 4, 5, 6, 7, 8, 9], c.dialogue()
    assert sort("REVERSE DATE") == [9, 8, 7, 6, 5, 4, 3, 2, 1], c.dialogue()
    # internal dates run backwards
    assert sort("ARRIVAL") == [9, 8, 7, 6, 5, 4, 3, 2, 1], c.dialogue()
    # first From mailbox: amy < bob < sender (x6, by sequence) < zed
    assert sort("FROM") == [2, 3, 4, 5, 6, 7, 8, 9, 1], c.dialogue()
    # SORT=DISPLAY: display names (Zed, Bob) or the address when there is none
    assert sort("DISPLAYFROM") == [2, 3, 4, 5, 6, 7, 8, 9, 1], c.dialogue()
    f = c.ok("FETCH 1:* RFC822.SIZE").fetches()
    sizes = {seq: int(d["RFC822.SIZE"]) for seq, d in f.items()}
    assert len(set(sizes.values())) == 9, sizes
    assert sorted(sizes, key=lambda k: sizes[k]) == [2, 4, 1, 8, 3, 7, 6, 9, 5], sizes
    assert sort("SIZE") == sorted(sizes, key=lambda k: sizes[k]), c.dialogue()
    assert sort("REVERSE SIZE") == sorted(sizes, key=lambda k: -sizes[k]), c.dialogue()
    assert sort("SUBJECT REVERSE DATE") == [5, 3, 9, 8, 4, 2, 1, 7, 6], c.dialogue()
    assert sort("SUBJECT", uid=True) == [4, 6, 9, 10, 2, 3, 5, 7, 8], c.dialogue()
    assert sort("DATE", search='SUBJECT "report"') == [6, 7], c.dialogue()
    c.expect("BAD", "SORT (NOSUCHKEY) UTF-8 ALL")
    c.expect("BAD", "SORT SUBJECT UTF-8 ALL")


def test_thread_deep_reply_chain_keeps_every_message(srv, user, clients):
    """A chain of 300 replies (References chosen by senders) is bounded, but no message is lost
    from the answer."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Deep")
    n = 300
    for k in range(n):
        refs = " ".join("<m%d@x.test>" % j for j in range(max(0, k - 60), k)) or None
        append(c, "Deep", msg("Re: deep" if k else "deep", "<m%d@x.test>" % k,
                              "Thu, 01 Jan 2026 10:%02d:%02d +0000" % (k // 60, k % 60),
                              irt="<m%d@x.test>" % (k - 1) if k else None, refs=refs))
    c.ok("SELECT Deep")
    r = c.ok("THREAD REFERENCES UTF-8 ALL", timeout=60)
    line = untagged(r, "THREAD")
    got = [int(x) for x in re.findall(r"\d+", line)]
    assert sorted(got) == list(range(1, n + 1)), line[:400]
    assert line.count("(") == line.count(")"), line[:400]
    c.ok("NOOP")
