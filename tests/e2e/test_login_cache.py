"""The login cache (login_cache_ttl): a worker that accepted a password lets the same
password in again without running the password hash, and never lets anything else in: a
wrong password, a changed password and a removed account are checked in full. The hits are
counted by /metrics (postino_login_cache_hits_total), which is how these tests see them.
One worker, so every login meets the same cache."""
import imaplib
import poplib
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from postino_server import BIN, Server
from queuehelp import free_port

USER = "cache@example.test"
OTHER = "other@example.test"


def make(ttl):
    port = free_port()
    s = Server(extra_conf="admin_port = %d\nworkers = 1\nlogin_cache_ttl = %s\n" % (port, ttl),
               users=(USER, OTHER), wait_for=("imaps", "pop3s"))
    s.admin = port
    return s


@pytest.fixture(scope="module")
def srv():
    s = make("10m")
    yield s
    s.stop()


def hits(srv):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.admin, timeout=10) as r:
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "postino_login_cache_hits_total":
                return int(smp.value)
    raise AssertionError("no postino_login_cache_hits_total in /metrics")


def imap_login(srv, user, password):
    """True when IMAPS LOGIN is accepted, False when refused."""
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=15)
    try:
        m.login(user, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.logout()
        except Exception:
            pass
    return True


def pop3_login(srv, user, password):
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=15)
    try:
        p.user(user)
        p.pass_(password)
    except poplib.error_proto:
        return False
    finally:
        try:
            p.quit()
        except Exception:
            pass
    return True


def passwd(srv, user, password):
    subprocess.run([BIN, "user", "passwd", user, "--data", srv.data], input=password + "\n",
                   text=True, capture_output=True, check=True)


def test_the_same_password_again_is_a_hit_in_every_protocol(srv):
    h0 = hits(srv)
    assert imap_login(srv, USER, srv.password)      # checked in full, remembered
    assert hits(srv) == h0
    assert imap_login(srv, USER, srv.password)
    assert hits(srv) == h0 + 1
    assert pop3_login(srv, USER, srv.password)      # one cache for every protocol
    assert hits(srv) == h0 + 2


def test_a_wrong_password_is_never_a_hit_and_forgets_the_entry(srv):
    assert imap_login(srv, OTHER, srv.password)
    h0 = hits(srv)
    assert not imap_login(srv, OTHER, srv.password + "x")
    assert not imap_login(srv, OTHER, "")
    assert hits(srv) == h0
    assert imap_login(srv, OTHER, srv.password)     # in full again after a failure
    assert hits(srv) == h0
    assert imap_login(srv, OTHER, srv.password)
    assert hits(srv) == h0 + 1


def test_a_changed_password_takes_effect_at_once(srv):
    user = "change@example.test"
    srv.add_user(user)
    assert imap_login(srv, user, srv.password)
    assert imap_login(srv, user, srv.password)      # now cached
    passwd(srv, user, "New-pw-98765")
    h0 = hits(srv)
    assert not imap_login(srv, user, srv.password), "the old password still logs in"
    assert imap_login(srv, user, "New-pw-98765")
    assert hits(srv) == h0


def test_a_removed_account_cannot_log_in_from_the_cache(srv):
    user = "gone@example.test"
    srv.add_user(user)
    assert imap_login(srv, user, srv.password)
    assert imap_login(srv, user, srv.password)
    subprocess.run([BIN, "user", "remove", user, "--data", srv.data], capture_output=True,
                   check=True)
    h0 = hits(srv)
    assert not imap_login(srv, user, srv.password), "a removed account logged in"
    assert hits(srv) == h0


def test_ttl_zero_turns_the_cache_off():
    s = make("0")
    try:
        for _ in range(3):
            assert imap_login(s, USER, s.password)
        assert hits(s) == 0
    finally:
        s.stop()


def worker_sessions(srv):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.admin, timeout=10) as r:
        text = r.read().decode()
    return {smp.labels["worker"]: smp.value for fam in text_string_to_metric_families(text)
            for smp in fam.samples if smp.name == "postino_worker_sessions"}


def test_the_workers_share_the_cache():
    """A client's connections land on different workers (the least busy takes the next one):
    a password one worker accepted lets the same client in on the others without the hash."""
    port = free_port()
    s = Server(extra_conf="admin_port = %d\nworkers = 3\nlogin_cache_ttl = 10m\n" % port,
               users=(USER,), wait_for=("imaps",))
    s.admin = port
    conns = []
    try:
        before = hits(s)
        for _ in range(6):   # held open, so they spread over the workers
            m = imaplib.IMAP4_SSL("127.0.0.1", s.port("imaps"), ssl_context=s.ctx(), timeout=15)
            conns.append(m)
            m.login(USER, s.password)
        busy = [w for w, n in worker_sessions(s).items() if n > 0]
        assert len(busy) >= 2, "the connections did not spread over the workers: %s" % busy
        # only the first login ran the hash
        assert hits(s) - before == len(conns) - 1
    finally:
        for m in conns:
            try:
                m.logout()
            except Exception:
                pass
        s.stop()
