"""IMAP with several sessions on one account at once, and POP3 beside IMAP (issues 3 and 4):
IDLE woken by SMTP delivery within a second, EXPUNGE and flag changes seen by the other
session at the moments RFC 3501/9051 allow, expunges under a selected session, QRESYNC, and
POP3 QUIT deletions seen by IMAP with UIDL = "%08x%08x" % (UID, UIDVALIDITY)."""
import poplib
import re
import smtplib
import socket
import threading
import time

import pytest

from test_imap_helpers import (imaplib_login, make_server, log_bytes, CRASH_MARKERS, HOST, Imap, _no_crash, append, clients, index_rows, message,
                               new_user, quote, session, sessions_at_rest, srv, user, wait_until)


def idle_start(c, tag="idle"):
    c.send("%s IDLE\r\n" % tag)
    r = c.read_response()
    assert r.startswith(b"+"), c.dialogue()


def idle_done(c, tag="idle"):
    c.send("DONE\r\n")
    return c.collect(tag)


def read_until(c, pattern, timeout):
    """Read untagged responses until one matches pattern; returns (line, seconds waited)."""
    t0 = time.monotonic()
    end = t0 + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("no %r within %.1fs\n%s" % (pattern, timeout, c.dialogue()))
        try:
            line = c.read_response(timeout=left)
        except socket.timeout:
            continue
        if re.search(pattern, line):
            return line, time.monotonic() - t0


def smtp_deliver_timed(srv, to, msg):
    """Deliver over SMTP; returns the monotonic time at which the DATA 250 came back."""
    s = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10)
    try:
        s.sendmail("sender@remote.test", [to], msg)
        t = time.monotonic()
    finally:
        s.quit()
    return t


def test_idle_woken_by_smtp_delivery_within_one_second(srv, user, clients):
    # several IDLE sessions so that both worker processes hold some
    sessions = [session(srv, user, "imaps" if i % 2 else "starttls", clients, select="INBOX")
                for i in range(4)]
    for c in sessions:
        idle_start(c)
    latencies = []
    for n in range(1, 4):
        acked = smtp_deliver_timed(srv, user, message("idle %d" % n, to=user))
        for c in sessions:
            line, _ = read_until(c, rb"^\* %d EXISTS\r\n" % n, 5)
            latencies.append(time.monotonic() - acked)
    print("IDLE latencies after the SMTP 250: %s" % ", ".join("%.3fs" % x for x in latencies))
    assert max(latencies) < 1.0, "IDLE woke after %.3fs (> 1 s): %s" % (max(latencies), latencies)
    for c in sessions:
        r = idle_done(c)
        assert r.status == "OK", c.dialogue()
        assert c.ok("NOOP").exists() is None, c.dialogue()   # IDLE told it all already
        f = c.ok("FETCH 1:* UID").fetches()
        assert len(f) == 3, c.dialogue()


def test_idle_reports_expunge_and_flags_from_other_session(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("idle-x %d" % i, to=user))
    a = session(srv, user, "imaps", clients, select="INBOX")
    b = session(srv, user, "imaps", clients, select="INBOX")
    idle_start(b)
    a.ok("STORE 1 +FLAGS (\\Flagged)")
    line, _ = read_until(b, rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", 3)
    a.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    line, _ = read_until(b, rb"^\* 3 EXPUNGE\r\n", 3)
    assert idle_done(b).status == "OK", b.dialogue()
    assert len(b.ok("FETCH 1:* UID").fetches()) == 2, b.dialogue()


def test_expunge_in_a_seen_by_b_on_noop_not_during_fetch(srv, user, clients):
    for i in range(4):
        srv.deliver(user, message("exp-ab %d" % i, to=user))
    a = session(srv, user, "imaps", clients, select="INBOX")
    b = session(srv, user, "starttls", clients, select="INBOX")
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    r = a.ok("EXPUNGE")
    assert r.expunges() == [2], a.dialogue()
    # RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH
    for cmd in ("FETCH 1:* FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL"):
        r = b.ok(cmd)
        assert r.expunges() == [], "EXPUNGE sent during %s\n%s" % (cmd, b.dialogue())
    r = b.ok("NOOP")
    assert r.expunges() == [2], b.dialogue()
    f = b.ok("FETCH 1:* UID").fetches()
    assert [int(v["UID"]) for _, v in sorted(f.items())] == [1, 3, 4], b.dialogue()
    # UID EXPUNGE in A too
    a.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    a.ok("UID EXPUNGE 4")
    r = b.ok("CHECK")
    assert r.expunges() == [3], b.dialogue()


def test_flag_changes_by_a_seen_by_b_as_fetch_flags(srv, user, clients):
    for i in range(2):
        srv.deliver(user, message("flags-ab %d" % i, to=user))
    a = session(srv, user, "imaps", clients, select="INBOX")
    b = session(srv, user, "imaps", clients, select="INBOX")
    a.ok("STORE 2 +FLAGS.SILENT (\\Answered $Label2)")
    r = b.ok("NOOP")
    f = r.fetches()
    assert 2 in f and set(f[2]["FLAGS"]) == {"\\Answered", "$Label2"}, b.dialogue()
    assert 1 not in f, b.dialogue()
    a.ok("STORE 1:2 -FLAGS.SILENT (\\Answered)")
    a.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    r = b.ok("NOOP")
    f = r.fetches()
    assert f[1]["FLAGS"] == ["\\Seen"] and f[2]["FLAGS"] == ["$Label2"], b.dialogue()
    r = b.ok("NOOP")
    assert not r.fetches(), "changes reported twice\n" + b.dialogue()
    # a new delivery is announced with EXISTS
    srv.deliver(user, message("flags-ab new", to=user))
    r = b.ok("NOOP")
    assert r.exists() == 3, b.dialogue()


def test_expunge_while_b_selected_then_b_fetches(srv, user, clients):
    bodies = []
    for i in range(3):
        m = message("gone %d" % i, to=user, body="body %d\r\n" % i)
        bodies.append(m)
        srv.deliver(user, m)
    a = session(srv, user, "imaps", clients, select="INBOX")
    b = session(srv, user, "imaps", clients, select="INBOX")
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    assert len(index_rows(srv, user)) == 2
    # B still believes message 2 exists: the server must answer sanely, not crash
    r = b.cmd("FETCH 2 (UID BODY[])")
    assert r.status == "OK", b.dialogue()
    assert r.expunges() == [], b.dialogue()
    f = r.fetches()
    if 2 in f and "BODY[]" in f[2]:
        assert f[2]["BODY[]"].endswith(bodies[1].encode()), \
            "a FETCH of an expunged message returns its old data or nothing\n" + b.dialogue()
    r = b.cmd("FETCH 1:3 (UID BODY.PEEK[TEXT])")
    assert r.status == "OK", b.dialogue()
    f = r.fetches()
    assert f[1]["BODY[TEXT]"] == b"body 0\r\n" and f[3]["BODY[TEXT]"] == b"body 2\r\n", b.dialogue()
    r = b.cmd("STORE 2 +FLAGS (\\Flagged)")
    assert r.status == "OK", b.dialogue()
    r = b.cmd("COPY 2 Trash")
    assert r.status == "OK", b.dialogue()
    r = b.cmd("SEARCH TEXT body")
    assert r.status == "OK" and r.expunges() == [], b.dialogue()
    r = b.ok("NOOP")
    assert r.expunges() == [2], b.dialogue()
    f = b.ok("FETCH 1:* (UID BODY.PEEK[TEXT])").fetches()
    assert sorted(f) == [1, 2] and f[2]["BODY[TEXT]"] == b"body 2\r\n", b.dialogue()
    assert a.alive() and b.alive()


def test_mailbox_deleted_under_a_selected_session(srv, user, clients):
    a = session(srv, user, "imaps", clients)
    a.ok("CREATE Doomed")
    append(a, "Doomed", message("doomed", to=user))
    b = session(srv, user, "imaps", clients, select="Doomed")
    a.ok("DELETE Doomed")
    # the next command of the session that had it selected: BYE, and the connection closes
    with pytest.raises(EOFError):
        b.cmd("FETCH 1 BODY.PEEK[]")
    assert b.log[-1][1] == b"* BYE The selected mailbox was deleted or renamed by another " \
        b"session\r\n", b.dialogue()
    c = session(srv, user, "imaps", clients)
    assert c.expect("NO", "SELECT Doomed")


def test_qresync_after_changes_elsewhere(srv, user, clients):
    for i in range(4):
        srv.deliver(user, message("qr %d" % i, to=user))
    a = session(srv, user, "imaps", clients)
    a.ok("ENABLE QRESYNC")
    r = a.ok("SELECT INBOX")
    codes = b"".join(r.ok_codes())
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", codes).group(1))
    hm = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", codes).group(1))
    a.ok("LOGOUT")
    # elsewhere: flags on UID 1, expunge UID 2, a new message
    b = session(srv, user, "imaps", clients, select="INBOX")
    b.ok("UID STORE 1 +FLAGS.SILENT (\\Flagged)")
    b.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("UID EXPUNGE 2")
    srv.deliver(user, message("qr new", to=user))
    # resynchronise
    a = session(srv, user, "imaps", clients)
    a.ok("ENABLE QRESYNC")
    r = a.ok("SELECT INBOX (QRESYNC (%d %d 1:4))" % (uv, hm))
    van = [u for u in r.untagged if u.startswith(b"* VANISHED (EARLIER)")]
    assert van and van[0].split()[-1] == b"2", a.dialogue()
    f = r.fetches()
    byuid = {int(v["UID"]): v for v in f.values()}
    assert 1 in byuid and "\\Flagged" in byuid[1]["FLAGS"] and "MODSEQ" in byuid[1], a.dialogue()
    assert 5 in byuid, "the new message is reported too\n" + a.dialogue()
    assert 3 not in byuid and 4 not in byuid, a.dialogue()
    assert r.exists() == 4, a.dialogue()
    newhm = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"".join(r.ok_codes())).group(1))
    assert newhm > hm
    # UID FETCH ... (CHANGEDSINCE n VANISHED)
    r = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hm)
    van = [u for u in r.untagged if u.startswith(b"* VANISHED (EARLIER)")]
    assert van and van[0].split()[-1] == b"2", a.dialogue()
    assert sorted(int(v["UID"]) for v in r.fetches().values()) == [1, 5], a.dialogue()
    # with QRESYNC enabled, expunges arrive as VANISHED
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    b.ok("UID EXPUNGE 3")
    r = a.ok("NOOP")
    assert any(u.startswith(b"* VANISHED 3") for u in r.untagged), a.dialogue()
    assert not r.expunges(), a.dialogue()
    # a wrong UIDVALIDITY gives no VANISHED / FETCH resync
    a2 = session(srv, user, "imaps", clients)
    a2.ok("ENABLE QRESYNC")
    r = a2.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv + 12345, hm))
    assert not [u for u in r.untagged if b"VANISHED" in u] and not r.fetches(), a2.dialogue()


# ------------------------------------------------------------------ POP3 beside IMAP

def pop3s(srv, addr):
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    p.user(addr)
    p.pass_(srv.password)
    return p


def pop3_login_retry(srv, addr, timeout=10):
    """Log in once an earlier (dropped) POP3 session on the account has been released."""
    def attempt():
        try:
            return pop3s(srv, addr)
        except poplib.error_proto as e:
            if b"IN-USE" in e.args[0]:
                return None
            raise
    return wait_until(attempt, timeout, 0.1, "POP3 maildrop to be released")


def test_pop3_quit_deletions_seen_by_imap_and_uidl_matches(srv, user, clients):
    for i in range(4):
        srv.deliver(user, message("pop %d" % i, to=user))
    a = session(srv, user, "imaps", clients)
    r = a.ok("SELECT INBOX")
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"".join(r.ok_codes())).group(1))
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")                                     # UIDs left: 2 3 4
    uids = [int(v["UID"]) for _, v in sorted(a.ok("FETCH 1:* UID").fetches().items())]
    assert uids == [2, 3, 4], a.dialogue()
    p = pop3s(srv, user)
    try:
        resp, lines, _ = p.uidl()
        got = [l.decode().split() for l in lines]
        assert got == [[str(i + 1), "%08x%08x" % (u, uv)] for i, u in enumerate(uids)], got
        assert p.uidl(2).split()[2].decode() == "%08x%08x" % (uids[1], uv)
        # POP3 sizes equal what IMAP reports (no dot-stuffing in these messages)
        sizes = {int(v["UID"]): int(v["RFC822.SIZE"])
                 for v in a.ok("FETCH 1:* (UID RFC822.SIZE)").fetches().values()}
        resp, lst, _ = p.list()
        assert [int(l.split()[1]) for l in lst] == [sizes[u] for u in uids]
        p.dele(2)                                       # UID 3
        # not committed before QUIT
        r = a.ok("NOOP")
        assert r.expunges() == [], a.dialogue()
        assert p.quit().startswith(b"+OK")
    except Exception:
        p.close()
        raise
    r = a.ok("NOOP")
    assert r.expunges() == [2], "POP3 QUIT deletion not seen as EXPUNGE\n" + a.dialogue()
    assert [int(v["UID"]) for _, v in sorted(a.ok("FETCH 1:* UID").fetches().items())] == [2, 4]
    # an IMAP session in IDLE sees it too
    idle_start(a)
    p = pop3_login_retry(srv, user)
    p.dele(1)
    p.quit()
    read_until(a, rb"^\* 1 EXPUNGE\r\n", 3)
    assert idle_done(a).status == "OK", a.dialogue()
    # a dropped POP3 connection commits nothing
    p = pop3_login_retry(srv, user)
    p.dele(1)
    p.close()                 # drop the connection without QUIT
    p2 = pop3_login_retry(srv, user)
    assert p2.stat()[0] == 1
    p2.quit()
    r = a.ok("NOOP")
    assert r.expunges() == [], a.dialogue()
    assert len(a.ok("FETCH 1:* UID").fetches()) == 1, a.dialogue()


def test_imap_changes_seen_by_pop3_and_uidl_stable(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("pop-b %d" % i, to=user))
    p = pop3s(srv, user)
    first = p.uidl()[1]
    p.quit()
    a = session(srv, user, "imaps", clients, select="INBOX")
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    append(a, "INBOX", message("pop-b appended", to=user))
    p = pop3_login_retry(srv, user)
    second = p.uidl()[1]
    p.quit()
    ids1 = [l.split()[1] for l in first]
    ids2 = [l.split()[1] for l in second]
    assert ids2[:2] == [ids1[0], ids1[2]] and len(ids2) == 3 and ids2[2] not in ids1


@pytest.fixture(scope="module")
def resting_srv():
    s = make_server(extra_conf="imap_rest_after = 1s\nlog_debug = yes")
    yield s
    bad = [m for m in CRASH_MARKERS if m in log_bytes(s)]
    s.stop()
    assert not bad, "server log shows %s" % bad


def test_sessions_at_rest_still_see_everything(resting_srv, clients):
    """An inactive session closes its index handle (imap_rest_after; the store's unit test
    checks that the last session closing a shared handle closes it); an IDLE at rest is still
    woken by a delivery within a second, and any command after rest sees what changed."""
    srv = resting_srv
    user = new_user(srv)
    mark = len(log_bytes(srv))
    srv.deliver(user, message("before rest", to=user))
    idler = session(srv, user, "imaps", clients, select="INBOX")
    other = session(srv, user, "starttls", clients, select="INBOX")
    idle_start(idler)
    # both sessions come to rest (the server logs it at debug level)
    wait_until(lambda: sessions_at_rest(srv, mark, 2), 8, 0.1, "both sessions to rest")
    acked = smtp_deliver_timed(srv, user, message("during rest 1", to=user))
    line, _ = read_until(idler, rb"^\* 2 EXISTS\r\n", 5)
    assert time.monotonic() - acked < 1.0, idler.dialogue()
    assert b"proto=imap event=wake\n" in log_bytes(srv), "no session came back from rest"
    # the other session at rest: NOOP reports the new message, FETCH reads it
    r = other.ok("NOOP")
    assert r.exists() == 2, other.dialogue()
    f = other.ok("FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").fetches()
    assert b"during rest 1" in bytes(list(f[2].values())[0]), other.dialogue()
    # changes by a session at rest reach the idler, again after rest
    wait_until(lambda: sessions_at_rest(srv, mark, 2), 8, 0.1, "both sessions to rest again")
    other.ok("STORE 1 +FLAGS (\\Flagged)")
    read_until(idler, rb"^\* 1 FETCH \(.*\\Flagged", 3)
    wait_until(lambda: sessions_at_rest(srv, mark, 2), 8, 0.1, "both sessions to rest again")
    srv.deliver(user, message("during rest 2", to=user))
    read_until(idler, rb"^\* 3 EXISTS\r\n", 3)
    assert idle_done(idler).status == "OK", idler.dialogue()
    assert len(idler.ok("FETCH 1:* UID").fetches()) == 3, idler.dialogue()
    assert len(other.ok("SEARCH ALL").of("SEARCH")[0]) == 3, other.dialogue()


# ------------------------------------------------------------ concurrent STORE (imaptest stress)

STORE_SESSIONS = 4
STORE_ROUNDS = 40
KW_PER_SESSION = 8
MODSEQ_FETCH = re.compile(rb"^(\d+) \(.*?UID (\d+).*?MODSEQ \((\d+)\)", re.S)


def _store_worker(srv, user, n, uid, errors, seen):
    """One session adding its own keywords to one message while the others add theirs; records
    every MODSEQ this session is told of that message, in order."""
    try:
        m = imaplib_login(srv, user, "imaps" if n % 2 else "starttls")
        try:
            m.enable("CONDSTORE")
            m.select("INBOX")
            for r in range(STORE_ROUNDS):
                kw = "$s%dk%d" % (n, r % KW_PER_SESSION)
                typ, data = m.uid("STORE", str(uid), "+FLAGS", "(%s)" % kw)
                if typ != "OK":
                    errors.append("session %d round %d: %s %r" % (n, r, typ, data))
                    return
                for item in data + m.untagged_responses.pop("FETCH", []):
                    mm = MODSEQ_FETCH.match(item if isinstance(item, bytes) else b"")
                    if mm and int(mm.group(2)) == uid:
                        seen.append(int(mm.group(3)))
                m.noop()
                for item in m.untagged_responses.pop("FETCH", []):
                    mm = MODSEQ_FETCH.match(item if isinstance(item, bytes) else b"")
                    if mm and int(mm.group(2)) == uid:
                        seen.append(int(mm.group(3)))
        finally:
            m.logout()
    except Exception as e:   # reported by the test, not lost in the thread
        errors.append("session %d: %r" % (n, e))


def test_concurrent_stores_keep_every_flag_and_modseq_never_drops(srv, user):
    # imaptest's stress run found both: a STORE read the mailbox's HIGHESTMODSEQ before taking
    # the write lock (another session's STORE committed in between: the message's MODSEQ went
    # down, "MODSEQ dropped"), and +FLAGS wrote back the session's own copy of the flags, losing
    # a keyword another session had just added
    m = imaplib_login(srv, user, "imaps")
    try:
        typ, data = m.append("INBOX", None, None,
                             b"From: a@remote.test\r\nSubject: race\r\n\r\nbody\r\n")
        assert typ == "OK", data
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    finally:
        m.logout()
    errors, seen = [], [[] for _ in range(STORE_SESSIONS)]
    threads = [threading.Thread(target=_store_worker, args=(srv, user, n, uid, errors, seen[n]))
               for n in range(STORE_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for n, mods in enumerate(seen):
        assert mods, "session %d was told no MODSEQ of the message" % n
        drops = [(a, b) for a, b in zip(mods, mods[1:]) if b < a]
        assert not drops, "session %d saw the message's MODSEQ go down: %s" % (n, drops[:5])
    m = imaplib_login(srv, user, "imaps")
    try:
        m.select("INBOX")
        typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
        assert typ == "OK", data
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).decode().split())
    finally:
        m.logout()
    want = {"$s%dk%d" % (n, k) for n in range(STORE_SESSIONS) for k in range(KW_PER_SESSION)}
    assert want <= flags, "keywords lost by concurrent +FLAGS: %s" % sorted(want - flags)
