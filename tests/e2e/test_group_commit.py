"""SMTP group commit (issue 13 item 1): messages that finish together share the sync of their
received files (one syncfs), the fsync of new/ and the index transaction, every acknowledged
message is on disk and in the index exactly once and answered only after the sync of new/ that
follows its link, and a failed sync answers 4xx to every message whose sync it was.

The server runs with tests/shim/fsyncshim.c preloaded (built here with cc): it logs every synced
path, can slow down the syncs of the received files (so that messages pile up while one batch
syncs, as they do under load on a slow disk) and can make chosen syncs fail with EIO."""
import os
import re
import shutil
import smtplib
import subprocess
import threading
import time
import uuid

import pytest

from conftest import finish_server, start_server
from smtphelp import SMTP, message

RCPT = "gc@example.test"
SENDERS = 20
PER_SENDER = 5
MSGID_RE = re.compile(rb"^Message-ID: <([^>]+)>", re.M | re.I)
SHIM_SRC = os.path.join(os.path.dirname(__file__), "..", "shim", "fsyncshim.c")
# a received file has no name (O_TMPFILE in <data>/tmp): /proc shows it as "<data>/tmp/#<inode>"
RECEIVED = "/tmp/#"


@pytest.fixture(scope="module")
def shim(workdir):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the fsync shim (scripts/deps.sh installs gcc)"
    so = os.path.join(workdir, "fsyncshim.so")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so, SHIM_SRC, "-ldl"], check=True)
    ctl = os.path.join(workdir, "fsyncshim")
    os.makedirs(ctl, exist_ok=True)
    os.chmod(ctl, 0o777)   # the workers run as another user when the tests run as root
    return so, ctl


@pytest.fixture(scope="module")
def gc_server(workdir, pki, shim):
    so, ctl = shim
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"LD_PRELOAD": so, "POSTINO_FSYNC_SHIM": ctl,
           # the sanitizer runtime must otherwise come first in the library list
           "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
    # one worker: every message meets the others in the same process, so batches are certain
    srv = start_server(os.path.join(workdir, "gc"), pki,
                       extra_conf="max_conn_per_ip = 100\nworkers = 1\n",
                       users={RCPT: "gc-Secret-pw-1"}, aliases={}, env=env)
    yield srv, ctl
    finish_server(srv)


def ctl_write(ctl, name, text):
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


def send_concurrently(srv, tag, senders, per_sender, acked_at=None):
    """senders sessions at once, per_sender messages each: (acked tokens, {token: reply code}).
    acked_at, a dict: token -> time.monotonic_ns() when its 250 had arrived."""
    acked, replies, lock = [], {}, threading.Lock()
    start = threading.Barrier(senders)

    def run(n):
        s = SMTP(srv.smtp_port, timeout=30)
        try:
            s.ehlo()
            start.wait()
            for i in range(per_sender):
                tok = "%s-%d-%d-%s" % (tag, n, i, uuid.uuid4().hex[:8])
                code = 250
                try:
                    s.sendmail("load@remote.test", [RCPT], message(tok, to=RCPT))
                except smtplib.SMTPDataError as e:
                    code = e.smtp_code
                when = time.monotonic_ns()
                with lock:
                    if acked_at is not None and code == 250:
                        acked_at[tok] = when
                    replies[tok] = code
                    if code == 250:
                        acked.append(tok)
            s.quit()
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a sender hung"
    return acked, replies


def stored(srv):
    """token -> files in INBOX new/ and cur/; token -> index rows."""
    files = {}
    for p in srv.all_message_files(RCPT):
        with open(p, "rb") as f:
            m = MSGID_RE.search(f.read(8192))
        if m:
            files.setdefault(m.group(1).decode().split("@")[0], []).append(os.path.basename(p))
    rows = {}
    by_name = {}
    for tok, names in files.items():
        for n in names:
            by_name[n.split(":2,")[0]] = tok
    for _uid, fname, *_rest in srv.index_messages(RCPT):
        tok = by_name.get(fname.split(":2,")[0], "<no file: %s>" % fname)
        rows[tok] = rows.get(tok, 0) + 1
    return files, rows


def check_exactly_once(srv, replies):
    files, rows = stored(srv)
    for tok, code in replies.items():
        if code == 250:
            assert len(files.get(tok, [])) == 1, "acknowledged %s is stored %d times" % (
                tok, len(files.get(tok, [])))
            assert rows.get(tok) == 1, "acknowledged %s has %s index rows" % (tok, rows.get(tok))
        else:
            assert 400 <= code < 500, "%s got %s" % (tok, code)
            assert tok not in files and tok not in rows, "refused %s was stored" % tok
    orphans = [t for t in rows if t.startswith("<no file")]
    assert not orphans, "index rows without a file: %s" % orphans


def test_concurrent_sessions_exactly_once(gc_server):
    srv, ctl = gc_server
    ctl_clear(ctl)
    acked, replies = send_concurrently(srv, "gc", SENDERS, PER_SENDER)
    assert len(acked) == SENDERS * PER_SENDER, \
        "refused: %s" % {t: c for t, c in replies.items() if c != 250}
    check_exactly_once(srv, replies)


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


def check_synced_before_250(srv, acked_at, events):
    """Every acknowledged message was linked into new/ under a name that ends in ",U=<the UID
    of its index row>", and a sync of new/ (or a syncfs, which covers it) began after that link
    and ended before its 250. The index's WAL is not synced for it: the name is what a power
    cut cannot take back (test_crash_recovery.py)."""
    newdir = os.path.join(srv.maildir(RCPT), "new")
    files, _rows = stored(srv)
    uids = {fname.split(":2,")[0]: uid for uid, fname, *_rest in srv.index_messages(RCPT)}
    links = {os.path.basename(p): end for _b, end, what, p in events
             if what == "link" and os.path.dirname(p) == newdir}
    dir_syncs = [(b, e) for b, e, what, p in events
                 if what == "sync" and (p.startswith("syncfs ") or p == newdir)]
    for tok, t250 in acked_at.items():
        names = files.get(tok, [])
        assert len(names) == 1, "acknowledged %s is stored %d times" % (tok, len(names))
        name = names[0].split(":2,")[0]
        assert name in links, "acknowledged %s was never linked into new/ (%s)" % (tok, name)
        assert name in uids and name.endswith(",U=%d" % uids[name]), \
            "acknowledged %s: its name %s does not carry its UID %s" % (tok, name, uids.get(name))
        assert any(links[name] < b and e < t250 for b, e in dir_syncs), \
            "%s got its 250 before a sync of new/ that began after its link" % tok


def test_syncs_are_shared(gc_server):
    """Batches share their syncs: one syncfs for the received files of a batch, one fsync of
    new/ for its links; no 250 comes before a sync of new/ that began after its message's
    link."""
    srv, ctl = gc_server
    ctl_clear(ctl)
    ctl_write(ctl, "delay", "40 %s\n" % RECEIVED)
    acked_at = {}
    try:
        acked, replies = send_concurrently(srv, "share", SENDERS, PER_SENDER, acked_at)
        lines = synced(ctl)
        events = timeline(ctl)
    finally:
        ctl_clear(ctl)
    total = SENDERS * PER_SENDER
    assert len(acked) == total
    check_exactly_once(srv, replies)
    check_synced_before_250(srv, acked_at, events)
    newdir = os.path.join(srv.maildir(RCPT), "new")
    dir_syncs = sum(1 for p in lines if p == newdir)
    data_syncs = sum(1 for p in lines if RECEIVED in p)
    shared_data_syncs = sum(1 for p in lines if p.startswith("syncfs ") and RECEIVED in p)
    # every batch syncs its received files before new/: an fsync for a lone message, one
    # syncfs for several
    assert data_syncs >= dir_syncs, \
        "%d syncs of received files for %d batches" % (data_syncs, dir_syncs)
    assert shared_data_syncs >= 1 and data_syncs < total, \
        "%d syncs of received files (%d shared) for %d messages: they were not shared" % (
            data_syncs, shared_data_syncs, total)
    # one fsync of new/ per batch instead of one per message
    assert 1 <= dir_syncs <= total // 3, \
        "%d fsyncs of new/ for %d messages: the syncs were not shared" % (dir_syncs, total)


def test_failed_sync_refuses_the_whole_batch(gc_server):
    srv, ctl = gc_server
    ctl_clear(ctl)
    newdir = os.path.join(srv.maildir(RCPT), "new")
    # the first message starts alone at once (no waiting for company) and its sync succeeds;
    # the ones that finish while its received file syncs form the second batch, whose fsync of
    # new/ fails: every message of that batch gets 4xx, none is stored
    ctl_write(ctl, "delay", "300 %s\n" % RECEIVED)
    ctl_write(ctl, "fail", "1 1 %s\n" % newdir)
    try:
        acked, replies = send_concurrently(srv, "fail", 10, 1)
    finally:
        ctl_clear(ctl)
    refused = [t for t, c in replies.items() if c != 250]
    assert all(400 <= replies[t] < 500 for t in refused), replies
    assert len(refused) >= 2, \
        "one failed fsync of new/ must refuse every message that shared it: %s" % replies
    assert acked, "the first batch synced fine and must be accepted: %s" % replies
    check_exactly_once(srv, replies)
    assert "event=delivery-failed" in srv.log_tail(400)


def test_failed_data_sync_is_4xx_then_recovers(gc_server):
    srv, ctl = gc_server
    ctl_clear(ctl)
    ctl_write(ctl, "fail", "0 -1 %s\n" % RECEIVED)
    try:
        acked, replies = send_concurrently(srv, "datafail", 5, 2)
    finally:
        ctl_clear(ctl)
    assert not acked, "a message whose file could not be fsync'd was acknowledged"
    assert all(c == 451 for c in replies.values()), replies
    check_exactly_once(srv, replies)
    # the disk is back: the next messages are accepted
    acked, replies = send_concurrently(srv, "after", 3, 1)
    assert len(acked) == 3, replies
    check_exactly_once(srv, replies)


def test_delivery_does_not_wait_for_the_index_wal(gc_server):
    """The index rows of a batch are committed without waiting for the disk, and their WAL is
    not synced before the 250: each file's name carries its UID, which the mailbox's
    reconciling gives back should a power cut take the commit away. A WAL whose sync would
    fail does not stop a delivery, and none is attempted."""
    srv, ctl = gc_server
    ctl_clear(ctl)
    wal = os.path.join(srv.maildir(RCPT), "index.db-wal")
    ctl_write(ctl, "fail", "0 -1 %s\n" % wal)
    try:
        acked, replies = send_concurrently(srv, "walfail", 2, 2)
        lines = synced(ctl)
    finally:
        ctl_clear(ctl)
    assert not [p for p in lines if p == wal], "the index WAL was synced: %s" % lines[-20:]
    assert len(acked) == 4 and all(c == 250 for c in replies.values()), replies
    check_exactly_once(srv, replies)
    files, _rows = stored(srv)
    uids = {fname.split(":2,")[0]: uid for uid, fname, *_rest in srv.index_messages(RCPT)}
    for tok in acked:
        name = files[tok][0].split(":2,")[0]
        assert name.endswith(",U=%d" % uids[name]), (tok, name, uids.get(name))


def test_named_received_files_without_o_tmpfile(gc_server):
    """Where the file system has no O_TMPFILE the received files get names (in.<pid>.*): each
    is synced like the unnamed ones, delivered exactly once, and gone from <data>/tmp after its
    250, accepted or not."""
    srv, ctl = gc_server
    ctl_clear(ctl)
    ctl_write(ctl, "notmpfile", "")
    ctl_write(ctl, "delay", "40 /tmp/in.\n")
    try:
        acked, replies = send_concurrently(srv, "named", 10, 2)
        lines = synced(ctl)
    finally:
        ctl_clear(ctl)
    assert len(acked) == 20, replies
    check_exactly_once(srv, replies)
    assert any("/tmp/in." in p for p in lines), \
        "no named received file was synced: %s" % lines[:20]
    assert not any(RECEIVED in p for p in lines), "an O_TMPFILE was made although refused"
    left = [n for n in os.listdir(os.path.join(srv.data, "tmp")) if n.startswith("in.")]
    assert not left, "received files left behind: %s" % left
