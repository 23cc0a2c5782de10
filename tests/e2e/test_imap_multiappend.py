"""MULTIAPPEND is all or nothing (RFC 3502, issue 11 item 7): a bad second message, an empty one
or a quota that the messages together exceed store none of them (no file, no index row, nothing
a client sees), and APPENDUID names exactly the UIDs given to any number of messages."""
import os
import re
import subprocess

import postino_server
from test_imap_helpers import (Imap, Lit, _no_crash, clients, index_rows, message, quote,
                               session, srv, user)


def files(srv, addr):
    """Every message file of the account's INBOX, in tmp/, new/ and cur/."""
    base = srv.maildir(addr)
    out = []
    for sub in ("tmp", "new", "cur"):
        d = os.path.join(base, sub)
        if os.path.isdir(d):
            out += [os.path.join(sub, n) for n in os.listdir(d)]
    return out


def state(c):
    r = c.ok("STATUS INBOX (MESSAGES UIDNEXT)")
    kv = r.of("STATUS")[0][1]
    return dict(zip(kv[0::2], kv[1::2]))


def assert_nothing_stored(srv, user, c, before):
    assert state(c) == before, c.dialogue()
    assert index_rows(srv, user) == [], index_rows(srv, user)
    assert files(srv, user) == [], files(srv, user)
    r = c.ok("SELECT INBOX")
    assert r.exists() == 0, c.dialogue()
    assert c.ok("UID SEARCH ALL").of("SEARCH") == [[]], c.dialogue()


def test_bad_flag_on_second_message_stores_nothing(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    before = state(c)
    m1 = message("first", to=user).encode()
    m2 = message("second", to=user).encode()
    r = c.cmd("APPEND INBOX ($Fresh1 \\Seen)", Lit(m1, plus=True), "(\\Bogus)",
              Lit(m2, plus=True))
    assert r.status == "BAD", c.dialogue()
    assert_nothing_stored(srv, user, c, before)
    # nor did the first message's keyword come into being
    r = c.ok("SELECT INBOX")
    assert b"$Fresh1" not in b"".join(r.untagged), c.dialogue()
    # the same with synchronising literals and a bad date on the third
    r = c.cmd("APPEND INBOX", Lit(m1), Lit(m2), '"31-Feb-20x0 10:00:00 +0000"', Lit(m1))
    assert r.status == "BAD", c.dialogue()
    assert_nothing_stored(srv, user, c, before)


def test_empty_third_message_stores_nothing(srv, user, clients):
    c = session(srv, user, "imaps", clients)
    before = state(c)
    m = message("x", to=user).encode()
    r = c.cmd("APPEND INBOX", Lit(m, plus=True), Lit(m, plus=True), Lit(b"", plus=True))
    assert r.status == "NO", c.dialogue()
    assert_nothing_stored(srv, user, c, before)


def test_over_quota_together_stores_nothing(srv, user, clients):
    """Each message fits the quota alone, and the first two together; all three do not."""
    subprocess.run([postino_server.BIN, "user", "quota", user, "10K", "--data", srv.data],
                   check=True, capture_output=True)
    c = session(srv, user, "imaps", clients)
    before = state(c)
    body = "q" * 3800 + "\r\n"
    msgs = [message("quota %d" % i, to=user, body=body).encode() for i in range(3)]
    assert 3 * len(msgs[0]) > 10240 > 2 * len(msgs[0])
    r = c.cmd("APPEND INBOX", *[Lit(m, plus=True) for m in msgs])
    assert r.status == "NO" and r.code == "OVERQUOTA", c.dialogue()
    assert_nothing_stored(srv, user, c, before)
    # two fit
    r = c.ok("APPEND INBOX", *[Lit(m, plus=True) for m in msgs[:2]])
    assert re.match(r"\[APPENDUID \d+ 1:2\]", r.text), c.dialogue()


def expand(uidset):
    out = []
    for part in uidset.split(","):
        a, _, b = part.partition(":")
        out += list(range(int(a), int(b or a) + 1))
    return out


def test_hundred_messages_appenduid_names_exactly_their_uids(srv, user, clients):
    srv.deliver(user, message("delivered 1", to=user))
    srv.deliver(user, message("delivered 2", to=user))
    c = session(srv, user, "imaps", clients, select="INBOX")
    old = set(int(x) for x in c.ok("UID SEARCH ALL").of("SEARCH")[0])
    assert len(old) == 2, c.dialogue()
    subjects = ["multi %03d" % i for i in range(100)]
    parts = []
    for i, subj in enumerate(subjects):
        if i % 3 == 1:
            parts.append("(\\Flagged)")
        parts.append(Lit(message(subj, to=user).encode(), plus=True))
    r = c.ok("APPEND INBOX", *parts)
    m = re.match(r"\[APPENDUID (\d+) ([\d:,]+)\]", r.text)
    assert m, c.dialogue()
    uids = expand(m.group(2))
    assert len(uids) == 100 and len(set(uids)) == 100, m.group(2)
    now = set(int(x) for x in c.ok("UID SEARCH ALL").of("SEARCH")[0])
    assert now - old == set(uids), (sorted(now - old), uids)
    # the UIDs are in the order of the messages in the command
    f = c.ok("UID FETCH %s (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % m.group(2))
    got = {}
    for item in f.fetches().values():
        subj = re.search(rb"Subject: (.*)\r\n", item["BODY[HEADER.FIELDS (SUBJECT)]"]).group(1)
        got[int(item["UID"])] = (subj.decode(), "\\Flagged" in item["FLAGS"])
    assert [got[u] for u in uids] == [(s, i % 3 == 1) for i, s in enumerate(subjects)]
    assert len(index_rows(srv, user)) == 102
