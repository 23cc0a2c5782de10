"""The workers' thread pools (src/lib/pool.c): threads start as jobs need them, and all but
one end after 5 s without a job (WORKER_POOL_IDLE_MS), giving back their handles and memory;
jobs after that (logins, IMAP writes, SMTP deliveries) still run, on new threads as needed."""
import os
import re
import threading
import time

from test_imap_helpers import (CRASH_MARKERS, all_started, append, clients,  # noqa: F401
                               log_bytes, make_server, message, new_user, session, wait_until)
from test_imap_multi import idle_done, idle_start, read_until, smtp_deliver_timed

# the loop thread and the pool's last thread; a third may be the resolver of the inbound
# checks, which the last thread keeps (it goes when a thread ends)
LEFT = 2
LEFT_AFTER_SMTP = 3


def _threads(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return 0


def _workers(s):
    """The worker processes: the master's children but the queue."""
    text = log_bytes(s)
    queue = [int(x) for x in re.findall(rb"postino/queue\[(\d+)\]", text)]
    kids = []
    for tid in os.listdir("/proc/%d/task" % s.proc.pid):
        with open("/proc/%d/task/%s/children" % (s.proc.pid, tid)) as f:
            kids += [int(x) for x in f.read().split()]
    return [p for p in kids if p not in queue]


def test_pool_threads_end_when_idle_and_jobs_still_run(clients):
    s = make_server()
    try:
        wait_until(lambda: all_started(s), 10, 0.05, "the workers and the queue to start")
        workers = _workers(s)
        assert len(workers) >= 2, workers
        users = [new_user(s, "pt") for _ in range(4)]
        # logins at once: each password check is a pool job, so threads start as they need
        peak = {p: _threads(p) for p in workers}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for p in workers:
                    peak[p] = max(peak[p], _threads(p))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        made, errors = [], []

        def login(u):
            try:
                made.append(session(s, u, "imaps", None, select="INBOX"))
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append(e)

        ts = [threading.Thread(target=login, args=(users[i % 4],)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        stop.set()
        sampler.join()
        clients.extend(made)
        assert not errors, errors
        assert max(peak.values()) >= LEFT + 1, "no worker started a second pool thread: %s" % peak
        # 5 s without a job: every thread but the last of each pool ends
        wait_until(lambda: all(_threads(p) <= LEFT for p in workers), 20, 0.2,
                   "the idle pool threads to end")
        # and the pools still work: logins, IMAP writes, SMTP delivery waking IDLE
        c = session(s, users[0], "imaps", clients, select="INBOX")
        append(c, "INBOX", message("appended after the threads ended", to=users[0]))
        c.ok("STORE 1 +FLAGS (\\Flagged)")
        watcher = session(s, users[1], "imaps", clients, select="INBOX")
        idle_start(watcher)
        for n in (1, 2):
            smtp_deliver_timed(s, users[1], message("after the threads ended %d" % n,
                                                    to=users[1]))
            read_until(watcher, rb"^\* %d EXISTS\r\n" % n, 5)
        assert idle_done(watcher).status == "OK", watcher.dialogue()
        other = session(s, users[1], "imaps", clients, select="INBOX")
        assert len(other.ok("FETCH 1:* UID").fetches()) == 2, other.dialogue()
        wait_until(lambda: all(_threads(p) <= LEFT_AFTER_SMTP for p in workers), 20, 0.2,
                   "the pool threads to end again")
        text = log_bytes(s)
        bad = [m for m in CRASH_MARKERS if m in text]
        assert not bad, "server log shows %s" % bad
    finally:
        s.stop()
