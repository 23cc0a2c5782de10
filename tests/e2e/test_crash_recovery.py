"""What a power cut can take back, and what it cannot (docs/architecture.md, "Delivery" and
"APPEND"): APPEND and delivery commit their index rows without syncing the index's WAL, so a
power cut can roll the index back to before them; their files were synced, under names that
end in ",U=<UID>". When the server comes back, the mailbox's reconciling (at SELECT and at a
POP3 login) gives each file the UID its client was told (APPENDUID, POP3 UIDL), its flags
(cur/'s ":2," letters) and its internal date (the file's mtime), and UIDNEXT moves past them.

The power cut is played here by kill -9 of the whole server, then the index rolled back by
hand to the state before the lost commits: their rows gone, UIDNEXT back where it was, and an
EXPUNGE that came after them lost too, while its file is gone (so fresh UIDs, given in any
order, would not match)."""
import imaplib
import os
import poplib
import re
import signal
import sqlite3
import subprocess
import time

from postino_server import BIN, Server

ADDR = "recover@example.test"


def message(subject, body="hello"):
    return ("From: a@remote.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@t>\r\n\r\n%s\r\n"
            % (ADDR, subject, subject.replace(" ", "."), body)).encode()


def imap(s):
    m = imaplib.IMAP4_SSL("127.0.0.1", s.port("imaps"), ssl_context=s.ctx(), timeout=10)
    m.login(ADDR, s.password)
    return m


def snapshot(m):
    """uid -> (flags without \\Recent, internal date as seconds, RFC822.SIZE) of INBOX."""
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert typ == "OK", data
    out = {}
    for line in data:
        if not isinstance(line, bytes):
            continue
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split())
        flags.discard("\\Recent")
        date = time.mktime(imaplib.Internaldate2tuple(line))
        size = int(re.search(rb"RFC822\.SIZE (\d+)", line).group(1))
        out[uid] = (frozenset(flags), date, size)
    return out


def uidnext(m):
    typ, data = m.status("INBOX", "(UIDNEXT)")
    assert typ == "OK", data
    return int(re.search(rb"UIDNEXT (\d+)", data[0]).group(1))


def uidl(s):
    p = poplib.POP3_SSL("127.0.0.1", s.port("pop3s"), context=s.ctx(), timeout=10)
    try:
        p.user(ADDR)
        p.pass_(s.password)
        return sorted(line.split()[1] for line in p.uidl()[1])
    finally:
        p.quit()


def files(s):
    out = []
    for sub in ("new", "cur"):
        out += os.listdir(os.path.join(s.maildir(ADDR), sub))
    return sorted(out)


def wait_for(pred, what, timeout=10):
    end = time.time() + timeout
    while not pred():
        assert time.time() < end, "timed out waiting for " + what
        time.sleep(0.05)


def power_cut(s, keep_uid):
    """kill -9 the server, then roll INBOX's index back to just after UID keep_uid: the rows
    above it, their cached structure and expunge records gone, UIDNEXT keep_uid + 1."""
    os.killpg(s.proc.pid, signal.SIGKILL)
    s.proc.wait(10)
    s.wait_group_gone()   # the workers die after the master
    db = os.path.join(s.maildir(ADDR), "index.db")
    st = os.stat(db)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        (box,) = con.execute("SELECT id FROM mailboxes WHERE name = 'INBOX'").fetchone()
        con.execute("BEGIN")
        for table in ("messages", "structure", "expunged"):
            con.execute("DELETE FROM %s WHERE mailbox_id = ? AND uid > ?" % table,
                        (box, keep_uid))
        con.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (keep_uid + 1, box))
        con.execute("COMMIT")
    finally:
        con.close()
    for n in os.listdir(os.path.dirname(db)):   # as the workers' user, like index.db
        if n.startswith("index.db"):
            os.chown(os.path.join(os.path.dirname(db), n), st.st_uid, st.st_gid)


def restart(s):
    s.proc = subprocess.Popen([BIN, "serve", "--data", s.data], stdout=s.log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    s.wait_ready()


def test_a_power_cut_cannot_take_back_the_uids_it_answered():
    s = Server(users=(ADDR,), wait_for=("smtp", "pop3", "imaps"))
    try:
        s.deliver(ADDR, message("kept"))                               # UID 1, survives
        m = imap(s)
        appended = []
        for i, flags in enumerate(("(\\Flagged)", None, "(\\Seen)")):  # UIDs 2, 3, 4
            typ, data = m.append("INBOX", flags, '"0%d-Jan-2020 10:00:00 +0000"' % (i + 1),
                                 message("appended %d" % i))
            assert typ == "OK", data
            appended.append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1)))
        assert appended == [2, 3, 4], appended
        s.deliver(ADDR, message("delivered a"))                        # UID 5
        s.deliver(ADDR, message("delivered b"))                        # UID 6
        m.select("INBOX")
        typ, data = m.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = m.expunge()
        assert typ == "OK", data
        m.logout()
        # the expunged file is removed after the answer (a pool job)
        wait_for(lambda: len(files(s)) == 5, "the expunged file to go")
        m = imap(s)
        before, next_before = snapshot(m), uidnext(m)
        m.logout()
        assert sorted(before) == [1, 2, 4, 5, 6], before
        assert next_before == 7
        pop_before = uidl(s)
        assert len(pop_before) == 5, pop_before
        names = files(s)
        for uid in (2, 4, 5, 6):
            assert [n for n in names if re.search(r",U=%d(:|$)" % uid, n)], (uid, names)

        power_cut(s, keep_uid=1)
        restart(s)

        m = imap(s)
        after = snapshot(m)
        next_after = uidnext(m)
        m.logout()
        assert sorted(after) == sorted(before), (before, after)
        for uid, (flags, date, size) in before.items():
            a_flags, a_date, a_size = after[uid]
            assert a_flags == flags and a_size == size, (uid, before[uid], after[uid])
            if uid in (2, 4):   # the dates the APPENDs gave, exactly
                assert a_date == date, (uid, before[uid], after[uid])
            else:               # a delivery's: the time it was received
                assert abs(a_date - date) <= 2, (uid, before[uid], after[uid])
        assert after[2][0] == {"\\Flagged"} and after[4][0] == {"\\Seen"}, after
        assert next_after == 7, next_after
        assert uidl(s) == pop_before
        # the next message comes after all of them
        s.deliver(ADDR, message("after the cut"))
        m = imap(s)
        assert sorted(snapshot(m)) == [1, 2, 4, 5, 6, 7]
        m.logout()
    finally:
        s.stop()
