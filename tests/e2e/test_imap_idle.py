"""IDLE driven by change notification (issue 13 item 2): every writer of an account's index
(SMTP delivery by the queue, STORE/EXPUNGE by another IMAP session, POP3 DELE+QUIT) wakes exactly
the IDLE sessions of that account, and IDLE sessions cost the worker no wakeups while nothing
changes (before, each polled the index every 500 ms)."""
import os
import poplib
import socket
import time

from test_imap_helpers import (_no_crash, clients, message, new_user, session, srv,  # noqa: F401
                               wait_until)
from test_imap_multi import idle_done, idle_start, read_until, smtp_deliver_timed


def assert_quiet(sessions, secs):
    """Nothing at all arrives on any of the sessions within secs."""
    end = time.monotonic() + secs
    for c in sessions:
        left = end - time.monotonic()
        try:
            line = c.read_response(timeout=max(0.05, left))
        except socket.timeout:
            continue
        raise AssertionError("a session of the other account got %r\n%s" % (line, c.dialogue()))


def test_idle_wakes_exactly_the_sessions_of_the_changed_account(srv, clients):
    a, b = new_user(srv, "ia"), new_user(srv, "ib")
    for i in range(2):
        srv.deliver(a, message("a before %d" % i, to=a))
    srv.deliver(b, message("b before", to=b))
    idle_a = [session(srv, a, "imaps" if i % 2 else "starttls", clients, select="INBOX")
              for i in range(3)]
    idle_b = [session(srv, b, "imaps" if i % 2 else "starttls", clients, select="INBOX")
              for i in range(2)]
    other = session(srv, a, "imaps", clients, select="INBOX")
    for c in idle_a + idle_b:
        idle_start(c)
    # a delivery over SMTP
    smtp_deliver_timed(srv, a, message("a new", to=a))
    for c in idle_a:
        read_until(c, rb"^\* 3 EXISTS\r\n", 5)
    assert_quiet(idle_b, 1.0)
    # another IMAP session's STORE
    other.ok("STORE 1 +FLAGS (\\Flagged)")
    for c in idle_a:
        read_until(c, rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", 5)
    assert_quiet(idle_b, 1.0)
    # ... and EXPUNGE
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    for c in idle_a:
        read_until(c, rb"^\* 2 EXPUNGE\r\n", 5)
    assert_quiet(idle_b, 1.0)
    # a POP3 deletion, committed by QUIT
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    p.user(a)
    p.pass_(srv.password)
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    for c in idle_a:
        read_until(c, rb"^\* 1 EXPUNGE\r\n", 5)
    assert_quiet(idle_b, 1.0)
    # the other way round: a delivery to B wakes B's sessions only
    smtp_deliver_timed(srv, b, message("b new", to=b))
    for c in idle_b:
        read_until(c, rb"^\* 2 EXISTS\r\n", 5)
    assert_quiet(idle_a, 1.0)
    for c in idle_a + idle_b:
        assert idle_done(c).status == "OK", c.dialogue()
    for c in idle_a:
        assert len(c.ok("FETCH 1:* UID").fetches()) == 1, c.dialogue()
    for c in idle_b:
        assert len(c.ok("FETCH 1:* UID").fetches()) == 2, c.dialogue()


def _descendants(root):
    """root and every process below it."""
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _listening_inode(port):
    """The socket inode of the TCP listener on 127.0.0.1:port."""
    want = ":%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "0A":
                return fields[9]
    raise AssertionError("no listener on port %d" % port)


def _workers(srv):
    """The processes holding the IMAPS listener (the master and the protocol workers)."""
    target = "socket:[%s]" % _listening_inode(srv.port("imaps"))
    out = []
    for pid in _descendants(srv.proc.pid):
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                    out.append(pid)
                    break
            except OSError:
                pass
    return out


def _wakeups(pids):
    """Context switches of every thread of the processes so far (each loop wakeup is one)."""
    total = 0
    for pid in pids:
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches",
                                            "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
        except OSError:
            pass
    return total


def _asleep(pids):
    """Is every thread of these processes asleep (state S: waiting in epoll or on a lock)?"""
    for pid in pids:
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "S":
                        return False
        except OSError:
            pass
    return True


def test_idle_sessions_do_not_wake_the_worker_while_nothing_changes(srv, clients):
    """12 IDLE sessions and 3 quiet seconds: the workers sleep (the old 500 ms poll woke every
    worker with an IDLE session at least 6 times). A delivery still reaches the sessions."""
    users = [new_user(srv, "iq") for _ in range(3)]
    idlers = [session(srv, users[i % 3], "imaps", clients, select="INBOX") for i in range(12)]
    for c in idlers:
        idle_start(c)
    pids = _workers(srv)
    assert len(pids) >= 2, pids
    # counting starts once the workers went to sleep after answering the IDLE commands
    wait_until(lambda: _asleep(pids), 5, 0.02, "the workers to go to sleep")
    before = _wakeups(pids)
    time.sleep(3)   # the subject: 3 quiet seconds
    woke = _wakeups(pids) - before
    assert woke <= 3, "the workers woke %d times in 3 s with 12 IDLE sessions and no change" % woke
    acked = smtp_deliver_timed(srv, users[0], message("wake up", to=users[0]))
    latencies = []
    for c in idlers[0::3]:
        read_until(c, rb"^\* 1 EXISTS\r\n", 5)
        latencies.append(time.monotonic() - acked)
    print("wakeups in 3 s: %d; IDLE latencies after the SMTP 250: %s"
          % (woke, ", ".join("%.3fs" % x for x in latencies)))
    assert_quiet([c for i, c in enumerate(idlers) if i % 3], 0.5)
    for c in idlers:
        assert idle_done(c).status == "OK", c.dialogue()


def test_idle_at_rest_woken_once_per_change_no_wake_loop(clients):
    """IDLE sessions at rest (imap_rest_after) are woken by a delivery, rest again (closing the
    index handle may checkpoint the WAL into index.db), and nothing wakes them again while
    nothing changes: looking and closing are not writes."""
    from test_imap_helpers import CRASH_MARKERS, log_bytes, make_server, wait_until
    s = make_server(extra_conf="imap_rest_after = 1s\nlog_debug = yes")
    try:
        u = new_user(s, "ir")
        idlers = [session(s, u, "imaps", clients, select="INBOX") for _ in range(3)]
        for c in idlers:
            idle_start(c)
        wait_until(lambda: log_bytes(s).count(b"proto=imap event=rest\n") >= 3, 8, 0.1,
                   "the sessions to rest")
        smtp_deliver_timed(s, u, message("at rest", to=u))
        for c in idlers:
            read_until(c, rb"^\* 1 EXISTS\r\n", 5)
            read_until(c, rb"^\* \d+ RECENT\r\n", 5)
        wait_until(lambda: log_bytes(s).count(b"proto=imap event=rest\n") >= 6, 8, 0.1,
                   "the sessions to rest again")
        wakes = log_bytes(s).count(b"proto=imap event=wake\n")
        time.sleep(3)   # the subject: 3 quiet seconds
        assert log_bytes(s).count(b"proto=imap event=wake\n") == wakes, \
            "IDLE sessions at rest woke with nothing changed"
        assert_quiet(idlers, 0.5)
        for c in idlers:
            assert idle_done(c).status == "OK", c.dialogue()
        bad = [m for m in CRASH_MARKERS if m in log_bytes(s)]
        assert not bad, "server log shows %s" % bad
    finally:
        s.stop()
