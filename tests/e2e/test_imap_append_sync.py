"""APPEND's path to disk (docs/architecture.md, IMAP): each message is written to a file without
a name in the mailbox's tmp/ (O_TMPFILE), synced while it still has no name, then linked into
new/ (or cur/ with flags) under the index's write lock, new/ is synced, and the index row
committed, all before the tagged OK. The file's name ends in ",U=<its UID>", so the rows need
no sync of the index's WAL (a power cut that takes the commit away leaves the mailbox's
reconciling the UID to give back; test_crash_recovery.py); an APPEND with keywords, which
only the rows hold, syncs the WAL too. Where the file system has no O_TMPFILE the file is
tmp/<name>, synced, and renamed. Either way nothing is left in tmp/, every answered message is
in the index with the UID its APPENDUID named, and a failed sync of a message file stores
nothing.

The server runs with tests/shim/fsyncshim.c preloaded (built here with cc): it logs every synced
path, notes when each sync began and ended and each link was made (its timeline), can refuse
O_TMPFILE and can make chosen syncs fail with EIO."""
import os
import re
import time

import pytest

from test_imap_helpers import (Imap, Lit, append, clients, fsync_shim, index_rows, message,
                               quote, shim_server)

USER = "appender@example.test"


@pytest.fixture(scope="module")
def shim():
    yield from fsync_shim("postino-appendsync-")


@pytest.fixture(scope="module")
def srv(shim):
    yield from shim_server(*shim, USER)


def ctl_set(ctl, name, text):
    p = os.path.join(ctl, name)
    with open(p + ".new", "w") as f:
        f.write(text)
    os.chmod(p + ".new", 0o666)
    os.rename(p + ".new", p)


def ctl_clear(ctl):
    for name in ("fail", "delay", "log", "notmpfile", "timeline"):
        try:
            os.unlink(os.path.join(ctl, name))
        except FileNotFoundError:
            pass


def synced(ctl):
    try:
        with open(os.path.join(ctl, "log")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def timeline(ctl):
    """The shim's timeline: [(begin ns, end ns, "sync" | "link", path)]."""
    out = []
    try:
        with open(os.path.join(ctl, "timeline")) as f:
            for line in f:
                begin, end, what, path = line.rstrip("\n").split(" ", 3)
                out.append((int(begin), int(end), what, path))
    except FileNotFoundError:
        pass
    return out


def tmp_files(srv):
    d = os.path.join(srv.maildir(USER), "tmp")
    return os.listdir(d) if os.path.isdir(d) else []


def box_files(srv):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(srv.maildir(USER), sub)
        out += [n for n in os.listdir(d)] if os.path.isdir(d) else []
    return sorted(out)


def appended(srv, shim, clients, tag, oks=None):
    """APPEND one message and MULTIAPPEND two (one with \\Seen): the UIDs answered, checked
    against the index rows and the files. oks, a list: gets (CLOCK_MONOTONIC ns once the tagged
    OK had arrived, the UIDs it answered for) of each command."""
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    before = {r[0] for r in index_rows(srv, USER)}
    msgs = [message("%s %d" % (tag, i), to=USER).encode() for i in range(3)]
    uids = [append(c, "INBOX", msgs[0])]
    if oks is not None:
        oks.append((time.monotonic_ns(), uids[:1]))
    r = c.ok("APPEND", "INBOX", Lit(msgs[1]), "(\\Seen)", Lit(msgs[2]))
    t_ok = time.monotonic_ns()
    m = re.match(r"\[APPENDUID \d+ (\d+):(\d+)\]", r.text)
    assert m, c.dialogue()
    uids += list(range(int(m.group(1)), int(m.group(2)) + 1))
    if oks is not None:
        oks.append((t_ok, uids[1:]))
    assert len(set(uids)) == 3, c.dialogue()
    rows = {r[0]: r for r in index_rows(srv, USER)}
    assert set(rows) - before == set(uids), (rows, uids)
    files = box_files(srv)
    c.ok("EXAMINE INBOX")
    for uid, msg in zip(uids, msgs):
        (name,) = [n for n in files if n.split(":2,")[0] == rows[uid][1].split(":2,")[0]]
        assert name.split(":2,")[0].endswith(",U=%d" % uid), (uid, name)
        sub = "cur" if ":2," in name else "new"
        with open(os.path.join(srv.maildir(USER), sub, name), "rb") as f:
            assert f.read() == msg, uid
        f = c.ok("UID FETCH %d BODY.PEEK[]" % uid).fetches()
        assert list(f.values())[0]["BODY[]"] == msg, c.dialogue()
    assert tmp_files(srv) == [], tmp_files(srv)
    return uids


def test_append_syncs_an_unnamed_file_then_links_it(srv, shim, clients):
    _, ctl = shim
    ctl_clear(ctl)
    oks = []
    uids = appended(srv, shim, clients, "unnamed", oks)
    log, events = synced(ctl), timeline(ctl)
    # three message files synced while they had no name (/proc shows "<dir>/tmp/#<inode>"), then
    # new/ and cur/ (the directories the names went into), in that order
    box = srv.maildir(USER)
    files = [i for i, p in enumerate(log) if p.startswith(box + "/tmp/#")]
    assert len(files) == 3, log
    dirs = [i for i, p in enumerate(log) if p in (box + "/new", box + "/cur")]
    assert dirs, log
    assert files[0] < dirs[0] and files[-1] < dirs[-1], log
    assert not [p for p in log if p.startswith(box + "/tmp/") and "/tmp/#" not in p], log
    # each OK came after a sync of the directory its files were linked into, begun after the
    # command's last link and ended before the OK
    rows = {r[0]: r[1].split(":2,")[0] for r in index_rows(srv, USER)}
    links = {}
    for _b, end, what, p in events:
        if what == "link" and os.path.dirname(p) in (box + "/new", box + "/cur"):
            links[os.path.basename(p).split(":2,")[0]] = (end, os.path.dirname(p))
    assert len(oks) == 2 and sum(len(u) for _t, u in oks) == len(uids) == 3, oks
    for t_ok, cmd_uids in oks:
        linked = [links[rows[u]] for u in cmd_uids]
        last = max(t for t, _d in linked)
        for d in {d for _t, d in linked}:
            assert any(p == d and last < b and e < t_ok for b, e, what, p in events
                       if what == "sync"), \
                "the OK for UIDs %s came before a sync of %s that began after their links: " \
                "%s" % (cmd_uids, d, events)


def test_append_without_o_tmpfile_uses_a_named_file(srv, shim, clients):
    _, ctl = shim
    ctl_clear(ctl)
    ctl_set(ctl, "notmpfile", "")
    try:
        appended(srv, shim, clients, "named")
        log = synced(ctl)
        tmp = srv.maildir(USER) + "/tmp/"
        assert len([p for p in log if p.startswith(tmp) and "/tmp/#" not in p]) == 3, log
    finally:
        ctl_clear(ctl)


@pytest.mark.parametrize("notmpfile", [False, True])
def test_failed_message_sync_stores_nothing(srv, shim, clients, notmpfile):
    _, ctl = shim
    ctl_clear(ctl)
    if notmpfile:
        ctl_set(ctl, "notmpfile", "")
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    rows, files = index_rows(srv, USER), box_files(srv)
    # the second message's file sync fails: neither message of the MULTIAPPEND is stored
    ctl_set(ctl, "fail", "1 1 %s/tmp/\n" % srv.maildir(USER))
    try:
        r = c.expect("NO", "APPEND", "INBOX", Lit(message("fail a", to=USER).encode()),
                     Lit(message("fail b", to=USER).encode()))
        assert "UNAVAILABLE" in r.text or r.code == "UNAVAILABLE", c.dialogue()
    finally:
        ctl_clear(ctl)
    assert index_rows(srv, USER) == rows
    assert box_files(srv) == files
    assert tmp_files(srv) == []
    # and the next APPEND works
    append(c, "INBOX", message("after the failure", to=USER))


@pytest.mark.parametrize("what", ["new", "index.db-wal"])
def test_failed_sync_after_the_commit_takes_the_messages_back(srv, shim, clients, what):
    """The rows are committed before the syncs of new/ and, for an APPEND with a keyword, of
    the WAL (the lock is held for no sync): when one of those fails the APPEND is answered NO,
    its files are removed and its rows dropped, and a session that had the mailbox selected
    hears of them as expunged."""
    _, ctl = shim
    ctl_clear(ctl)
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    w = Imap(srv)
    clients.append(w)
    w.login(USER)
    w.ok("SELECT INBOX")
    rows, files = index_rows(srv, USER), box_files(srv)
    ctl_set(ctl, "fail", "0 1 %s/%s\n" % (srv.maildir(USER), what))
    try:
        r = c.expect("NO", "APPEND", "INBOX", Lit(message("late fail a", to=USER).encode()),
                     "($LateFail)", Lit(message("late fail b", to=USER).encode()))
        log = synced(ctl)
    finally:
        ctl_clear(ctl)
    assert "UNAVAILABLE" in r.text or r.code == "UNAVAILABLE", c.dialogue()
    assert any(p.endswith("/" + what) for p in log), log
    assert index_rows(srv, USER) == rows
    assert box_files(srv) == files
    assert tmp_files(srv) == []
    n = w.ok("NOOP")
    assert n.exists() is None or n.exists() == len(rows), w.dialogue()
    append(c, "INBOX", message("after the late failure", to=USER))


def test_append_does_not_sync_the_wal_unless_it_sets_a_keyword(srv, shim, clients):
    """APPEND's rows are committed without a sync of the index's WAL (each name carries its
    UID): ten APPENDs in a row sync it at most when SQLite itself must (a new WAL's header, a
    checkpoint), not once each. Keywords live in the index rows only, so an APPEND that sets one
    syncs the WAL before its OK."""
    _, ctl = shim
    wal = srv.maildir(USER) + "/index.db-wal"
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    append(c, "INBOX", message("first", to=USER))
    ctl_clear(ctl)
    for i in range(10):
        append(c, "INBOX", message("plain %d" % i, to=USER))
    log = synced(ctl)
    ctl_clear(ctl)
    assert len([p for p in log if p == wal]) <= 2, log
    assert len([p for p in log if p == srv.maildir(USER) + "/new"]) == 10, log
    for kw in ("$Important", "$Work"):
        c.ok("APPEND", "INBOX", "(%s)" % kw, Lit(message("with " + kw, to=USER).encode()))
        log = synced(ctl)
        ctl_clear(ctl)
        assert [p for p in log if p == wal], log


def test_copy_is_answered_after_the_syncs_that_cover_its_links(srv, shim, clients):
    """COPY hard-links the files into the target, syncs its new/ and cur/ and commits the rows
    (the WAL synced): the OK follows those syncs, each begun after the last link."""
    _, ctl = shim
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    c.ok("CREATE", "CopyDest")
    append(c, "INBOX", message("to copy", to=USER))
    c.ok("SELECT INBOX")
    target = os.path.join(srv.maildir(USER), ".CopyDest")
    ctl_clear(ctl)
    r = c.ok("UID COPY 1:* CopyDest")
    t_ok = time.monotonic_ns()
    events = timeline(ctl)
    assert "COPYUID" in r.text, c.dialogue()
    links = [end for _b, end, what, p in events if what == "link" and p.startswith(target + "/")]
    assert links and len(index_rows(srv, USER, "CopyDest")) == len(links), events
    for d in (target + "/new", target + "/cur", srv.maildir(USER) + "/index.db-wal"):
        assert any(p == d and max(links) < b and e < t_ok for b, e, what, p in events
                   if what == "sync"), \
            "the COPY's OK came before a sync of %s that began after its links: %s" % (d, events)
