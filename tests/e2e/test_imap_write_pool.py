"""IMAP writes run on the worker's thread pool, never on its event loop (issue 10, "no disk write
on the event-loop thread"; docs/architecture.md): while one session's APPEND, STORE, COPY, MOVE,
EXPUNGE, CLOSE, CREATE, RENAME, DELETE, (UN)SUBSCRIBE or FETCH-sets-\\Seen is being synced to
disk, the other sessions of the same worker (`workers = 1`) are answered.

A slow disk is made observable without timings by tests/e2e/slowsync.c, an LD_PRELOAD shim that
holds the fsync/fdatasync of chosen files until the test releases it: the test sees the sync
begin (the shim's "waiting" file), then asks another session for NOOP/SELECT and requires the
answer while the sync is still held. On a server that syncs on its loop thread that answer never
comes until the release, and the test fails.
"""
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile

import pytest

from test_imap_helpers import (CRASH_MARKERS, Imap, Lit, _no_crash, append, clients, log_bytes,
                               make_server, message, new_user, quote, session, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = 25 * 1024 * 1024          # the 25 MB APPEND
ANSWER_S = 15                   # generous: the other session's answer needs no disk sync


@pytest.fixture(scope="module")
def gate():
    """The shim, built here, and the directory that steers it."""
    d = tempfile.mkdtemp(prefix="postino-slowsync-")
    so = os.path.join(d, "slowsync.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", so, os.path.join(HERE, "slowsync.c"),
                    "-ldl"], check=True)
    g = os.path.join(d, "gate")
    os.mkdir(g)
    os.chmod(d, 0o755)
    os.chmod(g, 0o777)   # the workers may run as another user (run_user); they write "waiting"
    yield so, g
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def srv(gate):
    so, g = gate
    env = dict(os.environ)
    env["LD_PRELOAD"] = (so + " " + env["LD_PRELOAD"]) if env.get("LD_PRELOAD") else so
    env["SLOWSYNC_GATE"] = g
    # an ASan build wants its runtime first; the shim only wraps two libc calls
    env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                               "verify_asan_link_order=0") if x)
    s = make_server(extra_conf="workers = 1\nmessage_size_limit = 30M\n", env=env)
    yield s
    disarm(g)
    bad = [m for m in CRASH_MARKERS if m in log_bytes(s)]
    s.stop()
    assert not bad, "server log shows %s" % bad


def arm(g, match, min_size=0):
    disarm(g)
    with open(os.path.join(g, "armed"), "w") as f:
        f.write("%d %s\n" % (min_size, match))


def disarm(g):
    for n in ("armed", "waiting", "release", "fail"):
        try:
            os.unlink(os.path.join(g, n))
        except FileNotFoundError:
            pass


def release(g):
    open(os.path.join(g, "release"), "w").close()


def wait_sync_held(g, what):
    wait_until(lambda: os.path.exists(os.path.join(g, "waiting")), 60, 0.02,
               "the server to start syncing (%s)" % what)


def served_meanwhile(c, *cmds, timeout=ANSWER_S):
    """Each command's tagged answer, while another session's sync is held."""
    out = []
    for cmd in cmds:
        try:
            out.append(c.cmd(*cmd, timeout=timeout))
        except socket.timeout:
            pytest.fail("%r got no answer within %d s while another session's write was being "
                        "synced: the write blocks the worker's event loop\n%s"
                        % (" ".join(cmd), timeout, c.dialogue()))
    return out


def no_answer_yet(c, tag):
    """The session whose sync is held has not been answered."""
    try:
        c._fill(0.2)
    except socket.timeout:
        pass
    assert not re.search(rb"(^|\r\n)" + tag.encode() + rb" ", c.buf), c.buf[-300:]


def big_message(user):
    head = message("big one", to=user, body="").encode()
    line = b"x" * 998 + b"\r\n"
    return head + line * ((BIG - len(head)) // len(line))


def test_25mb_append_being_synced_leaves_other_sessions_served(srv, gate, clients):
    so, g = gate
    u = new_user(srv)
    a = session(srv, u, clients=clients)
    b = session(srv, u, clients=clients)   # the same account, the same worker (workers = 1)
    msg = big_message(u)
    arm(g, "/tmp/", 1 << 20)               # the message file's fsync in the mailbox's tmp/
    try:
        a.send(b"a1 APPEND INBOX {%d}\r\n" % len(msg))
        assert a.read_response().startswith(b"+"), a.dialogue()
        a.sock.sendall(msg + b"\r\n")
        wait_sync_held(g, "the 25 MB APPEND")
        noop, sel = served_meanwhile(b, ("NOOP",), ("SELECT", "INBOX"))
        assert noop.status == "OK" and sel.status == "OK", b.dialogue()
        assert sel.exists() == 0, b.dialogue()   # nothing is visible before it is durable
        no_answer_yet(a, "a1")
    finally:
        release(g)
    r = a.collect("a1", timeout=60)
    assert r.status == "OK" and r.code.startswith("APPENDUID"), a.dialogue()
    disarm(g)
    r = b.ok("NOOP")
    assert r.exists() == 1, b.dialogue()
    f = b.ok("FETCH 1 RFC822.SIZE").fetches()[1]
    assert int(f["RFC822.SIZE"]) == len(msg), f


# command run by session A while its index sync is held, with the setup it needs. Flag changes
# and expunges are committed without a sync (synchronous=NORMAL: the files' names hold the flags
# too; an expunge of a few messages is made on the loop when the lock is free), so STORE,
# FETCH's \Seen, EXPUNGE and CLOSE are held by the test holding the index's write lock instead,
# and so is SELECT, whose reconciling of index and files takes that lock.
LOCKED = ("STORE", "STORE-new-keyword", "FETCH-sets-Seen", "SELECT", "EXPUNGE", "UID-EXPUNGE",
          "CLOSE")
LOCK_ANSWER_S = 3   # below SQLite's 5 s busy timeout: an old server answers only after it
WRITES = {
    "APPEND": None,
    "STORE": ("STORE", "1", "+FLAGS", "(\\Flagged)"),
    "STORE-new-keyword": ("STORE", "1", "+FLAGS", "($Fresh)"),
    "COPY": ("COPY", "1", "Other"),
    "UID-MOVE": ("UID", "MOVE", "1", "Other"),
    "EXPUNGE": ("EXPUNGE",),
    "UID-EXPUNGE": ("UID", "EXPUNGE", "1:*"),
    "CLOSE": ("CLOSE",),
    "CREATE": ("CREATE", "Fresh/Child"),
    "RENAME": ("RENAME", "Other", "Renamed"),
    "DELETE": ("DELETE", "Other"),
    "UNSUBSCRIBE": ("UNSUBSCRIBE", "Other"),
    "FETCH-sets-Seen": ("FETCH", "1", "BODY[]"),
    # SELECT reconciles the index with the files under the write lock first
    "SELECT": ("SELECT", "INBOX"),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_write_being_synced_leaves_other_sessions_served(srv, gate, clients, name):
    so, g = gate
    u = new_user(srv)
    other = new_user(srv)
    a = session(srv, u, clients=clients)
    a.ok("CREATE", "Other")
    for i in range(2):
        append(a, "INBOX", message("m%d" % i, to=u))
    a.ok("SELECT", "INBOX")
    if "EXPUNGE" in name or name == "CLOSE":
        a.ok("STORE", "1", "+FLAGS", "(\\Deleted)")
    if name == "UNSUBSCRIBE":
        a.ok("SUBSCRIBE", "Other")
    b = session(srv, other, clients=clients, select="INBOX")   # another account, same worker
    local = u.split("@")[0]
    lock = None
    if name in LOCKED:
        lock = sqlite3.connect(os.path.join(srv.maildir(u), "index.db"), timeout=0,
                               isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")   # A's write waits for it (SQLite's busy handler)
        arm(g, "busy", 0)
    elif name == "APPEND":
        arm(g, "/%s/new" % local)   # A's new/ (its name carries its UID: no sync of the WAL)
    else:
        arm(g, "/%s/index.db-wal" % local)     # A's index commit
    try:
        if name == "APPEND":
            m = message("appended", to=u).encode()
            a.send(b"a1 APPEND INBOX {%d+}\r\n" % len(m) + m + b"\r\n")
        else:
            a.send(("a1 " + " ".join(WRITES[name]) + "\r\n").encode())
        wait_sync_held(g, name)
        noop, sel = served_meanwhile(b, ("NOOP",), ("SELECT", "INBOX"),
                                     timeout=LOCK_ANSWER_S if lock else ANSWER_S)
        assert noop.status == "OK" and sel.status == "OK", b.dialogue()
        no_answer_yet(a, "a1")
    finally:
        release(g)
        if lock:
            lock.execute("ROLLBACK")
            lock.close()
    r = a.collect("a1", timeout=60)
    assert r.status == "OK", a.dialogue()
    disarm(g)
    assert a.alive()


def test_client_gone_while_its_append_is_synced(srv, gate, clients):
    """A dropped connection while its job runs: the job finishes, the session is freed once
    (ASan would see a use after free), the message is stored, the worker lives on."""
    so, g = gate
    u = new_user(srv)
    a = session(srv, u, clients=clients)
    b = session(srv, u, clients=clients, select="INBOX")
    msg = message("left behind", to=u, body="y" * (2 << 20)).encode()
    arm(g, "/tmp/", 1 << 20)
    try:
        a.send(b"a1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        wait_sync_held(g, "the APPEND of a client that goes away")
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        a.close()                              # RST: the server's next write fails
        served_meanwhile(b, ("NOOP",))
    finally:
        release(g)
    wait_until(lambda: b.ok("NOOP").exists() == 1, 30, 0.1, "the APPEND to complete")
    disarm(g)
    c = session(srv, u, clients=clients, select="INBOX")
    assert int(c.ok("FETCH 1 RFC822.SIZE").fetches()[1]["RFC822.SIZE"]) == len(msg)
    wait_until(lambda: b"reason=\"client disconnected\"" in log_bytes(srv)
               or b"reason=\"I/O error\"" in log_bytes(srv), 10, 0.1, "the session to close")


def test_failed_sync_is_a_no_with_a_code_and_stores_nothing(srv, gate, clients):
    so, g = gate
    u = new_user(srv)
    a = session(srv, u, clients=clients, select="INBOX")
    arm(g, "/tmp/", 0)
    open(os.path.join(g, "fail"), "w").close()
    try:
        r = a.cmd("APPEND", "INBOX", Lit(message("lost", to=u).encode()))
    finally:
        disarm(g)
    assert r.status == "NO" and r.code == "UNAVAILABLE", a.dialogue()
    assert a.ok("NOOP").exists() is None, a.dialogue()   # nothing came in
    base = srv.maildir(u)
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(os.path.join(base, sub)) == [], sub
