"""EXPUNGE on the event loop (docs/architecture.md, IMAP): an EXPUNGE, UID EXPUNGE or CLOSE of
a few messages is made with the session's shared index handle when the write lock is free at
once, committed without waiting for the disk (like a flag change), with no pool job; when the
lock is held elsewhere, or the messages are many, it goes to the pool, whose commit is synced.
Either way the answer, the index, the files and what other sessions hear are the same; the
loop's expunge leaves the removal of the files to the pool, after the answer (an unlink can wait
for the disk).

The server runs with tests/shim/fsyncshim.c preloaded (built here with cc), which logs every
synced path: the sync of index.db-wal tells the two ways apart."""
import os
import sqlite3
import threading
import time

import pytest

from conftest import wait_until
from test_imap_helpers import (Imap, append, clients, fsync_shim, index_rows, message,
                               message_file, shim_server)

USER = "expunger@example.test"
INLINE_MAX = 64   # IMAP_EXPUNGE_INLINE_MAX in src/imap/imap-mailbox.c


@pytest.fixture(scope="module")
def shim():
    yield from fsync_shim("postino-expunge-")


@pytest.fixture(scope="module")
def srv(shim):
    yield from shim_server(*shim, USER)


def start_log(ctl):
    p = os.path.join(ctl, "log")
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    with open(os.path.join(ctl, "log.new"), "w"):
        pass
    os.chmod(os.path.join(ctl, "log.new"), 0o666)
    os.rename(os.path.join(ctl, "log.new"), p)


def wal_syncs(ctl):
    try:
        with open(os.path.join(ctl, "log")) as f:
            return [p for p in f.read().splitlines() if p.endswith("index.db-wal")]
    except FileNotFoundError:
        return []


def filled(srv, clients, n, tag):
    """A fresh session with n new messages in INBOX, every one marked \\Deleted except the
    first: (session, uids, file paths of the deleted ones)."""
    c = Imap(srv)
    clients.append(c)
    c.login(USER)
    c.ok("SELECT INBOX")
    uids = [append(c, "INBOX", message("%s %d" % (tag, i), to=USER)) for i in range(n)]
    c.ok("NOOP")
    c.ok("UID STORE %d:%d +FLAGS.SILENT (\\Deleted)" % (uids[1], uids[-1]))
    rows = {r[0]: r[1] for r in index_rows(srv, USER)}
    paths = [message_file(srv, USER, rows[u]) for u in uids[1:]]
    assert all(paths), paths
    return c, uids, paths


def check_gone(srv, c, watcher, uids, paths, resp):
    """The deleted messages are gone from the answer, the index, the disk and the other
    session's view; the first one stays."""
    assert len(resp.expunges()) == len(uids) - 1, c.dialogue()
    left = {r[0] for r in index_rows(srv, USER)}
    assert uids[0] in left and not (set(uids[1:]) & left), (left, uids)
    # the loop's expunge has the pool remove the files after the answer
    wait_until(lambda: not [p for p in paths if os.path.exists(p)], timeout=10,
               what="the expunged files to be removed")
    r = watcher.ok("NOOP")
    assert len(r.expunges()) == len(uids) - 1, watcher.dialogue()
    f = c.ok("UID FETCH %d FLAGS" % uids[0]).fetches()
    assert f, c.dialogue()


def watching(srv, clients):
    w = Imap(srv)
    clients.append(w)
    w.login(USER)
    w.ok("SELECT INBOX")
    return w


def test_few_messages_expunged_on_the_loop_without_a_sync(srv, shim, clients):
    _so, ctl = shim
    c, uids, paths = filled(srv, clients, 4, "inline")
    w = watching(srv, clients)
    start_log(ctl)
    r = c.ok("EXPUNGE")
    synced = wal_syncs(ctl)
    check_gone(srv, c, w, uids, paths, r)
    # the pool's expunge commits with synchronous=FULL (a sync of the WAL); the loop's does not
    assert synced == [], "the EXPUNGE of 3 messages synced the index: %s" % synced


def test_busy_index_sends_the_expunge_to_the_pool(srv, shim, clients):
    """Another process holds the index's write lock: the loop must not wait for it; the pool
    does, and answers once the lock is free."""
    _so, ctl = shim
    c, uids, paths = filled(srv, clients, 3, "busy")
    w = watching(srv, clients)
    other = Imap(srv)
    clients.append(other)
    other.login(USER)
    con = sqlite3.connect(os.path.join(srv.maildir(USER), "index.db"), isolation_level=None,
                          check_same_thread=False, timeout=5)
    start_log(ctl)
    con.execute("BEGIN IMMEDIATE")
    released = threading.Timer(1.0, lambda: con.execute("ROLLBACK"))
    try:
        c.send(b"X1 UID EXPUNGE %d:%d\r\n" % (uids[1], uids[-1]))
        # the worker's loop still answers other sessions while the pool waits for the lock
        t0 = time.monotonic()
        other.ok("NOOP")
        assert time.monotonic() - t0 < 0.9, "the loop waited for the index lock"
        released.start()
        r = c.collect("X1", timeout=15)
    finally:
        released.join()
        con.close()
    assert r.status == "OK", c.dialogue()
    check_gone(srv, c, w, uids, paths, r)
    assert wal_syncs(ctl), "the pool's expunge did not sync the index"


def test_many_messages_expunged_on_the_pool(srv, shim, clients):
    _so, ctl = shim
    c, uids, paths = filled(srv, clients, INLINE_MAX + 6, "many")
    w = watching(srv, clients)
    start_log(ctl)
    r = c.ok("CLOSE")
    assert r.status == "OK", c.dialogue()
    assert wal_syncs(ctl), "an expunge of %d messages ran on the loop" % (len(uids) - 1)
    left = {x[0] for x in index_rows(srv, USER)}
    assert uids[0] in left and not (set(uids[1:]) & left)
    assert not [p for p in paths if os.path.exists(p)], "expunged files still on disk"
    assert len(w.ok("NOOP").expunges()) == len(uids) - 1, w.dialogue()


def test_files_are_removed_after_the_answer(srv, shim, clients):
    """Unlinks that wait for the disk (here 1.5 s each, as a discard can make them) do not hold
    the loop: the EXPUNGE is answered, and the other sessions hear it, while its files are
    still there; the pool removes them after."""
    _so, ctl = shim
    c, uids, paths = filled(srv, clients, 3, "slow-unlink")
    w = watching(srv, clients)
    delay = os.path.join(ctl, "unlinkdelay")
    with open(delay, "w") as f:
        f.write("1500 %s\n" % os.path.dirname(paths[0]))
    try:
        start_log(ctl)
        r = c.ok("EXPUNGE")
        there = [p for p in paths if os.path.exists(p)]
        assert wal_syncs(ctl) == [], "this EXPUNGE was meant for the loop"
        assert there == paths, "the EXPUNGE was answered after its files were removed"
        assert len(r.expunges()) == len(uids) - 1, c.dialogue()
        assert len(w.ok("NOOP").expunges()) == len(uids) - 1, w.dialogue()
        left = {x[0] for x in index_rows(srv, USER)}
        assert uids[0] in left and not (set(uids[1:]) & left)
        wait_until(lambda: not [p for p in paths if os.path.exists(p)], timeout=20,
                   what="the pool to remove the expunged files")
    finally:
        os.unlink(delay)
