"""Observability (issue 14): the admin listener serves /metrics in the Prometheus text format
(checked with prometheus_client's parser), its counters are the sum over every worker process
and the queue process, and they move with SMTP, IMAP and POP3 logins and deliveries;
`postino status` prints the same at a glance."""
import imaplib
import poplib
import re
import smtplib
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_until
from postino_server import BIN, Server
from queuehelp import free_port

USER = "alice@example.test"


@pytest.fixture(scope="module")
def srv():
    port = free_port()
    # no DNS answers: a message for another server stays queued and is deferred
    s = Server(extra_conf="admin_port = %d\nlisten = *\nworkers = 3\n"
               "dns_servers = 127.0.0.1:%d" % (port, free_port()), users=(USER,),
               wait_for=("smtp", "imap", "pop3"))
    s.admin = port
    yield s
    s.stop()


def scrape(srv):
    """name{labels} -> value, parsed strictly."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.admin, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.documentation, fam.name
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m, name, **labels):
    return m[(name, tuple(sorted(labels.items())))]


def test_admin_listener_is_loopback_and_serves_only_metrics(srv):
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % srv.admin], capture_output=True,
                         text=True).stdout
    assert "127.0.0.1:%d" % srv.admin in out, out        # listen = * leaves it on loopback
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/setup" % srv.admin, timeout=10)
    assert e.value.code == 404
    # and the public HTTP listener has no /metrics
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.port("http"), timeout=10)
    assert e.value.code == 404


def test_counters_move_with_logins_and_deliveries(srv):
    before = scrape(srv)
    # SMTP: a delivery on 25 and a good and a bad login on 587
    srv.deliver(USER, "Subject: m\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=srv.ctx())
        s.login(USER, srv.password)
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=srv.ctx())
        s.ehlo()
        s.user, s.password = USER, "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)     # one attempt (login() would try LOGIN too)
    for _ in range(3):     # several connections: they spread over the 3 workers
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx())
        m.login(USER, srv.password)
        m.select("INBOX")
        m.logout()
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx())
    p.user(USER)
    p.pass_(srv.password)
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx())
    p.user(USER)
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    p.quit()
    # a TLS handshake that fails
    with socket.create_connection(("127.0.0.1", srv.port("imaps")), 5) as c:
        c.sendall(b"\x16\x03\x01\x00\x05garbage")
        c.settimeout(5)
        try:
            c.recv(100)
        except OSError:
            pass
    # the worker counts the failure after OpenSSL has sent its alert, so the client can be
    # here first: wait for it (a failure that is never counted still fails, after 10 s)
    def tls_failure_counted():
        m = scrape(srv)
        failed = "postino_tls_handshake_failures_total"
        return m if val(m, failed) > val(before, failed) else None

    after = wait_until(tls_failure_counted, what="the failed handshake to be counted")

    def moved(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert moved("postino_logins_total", proto="smtp", result="ok") == 1
    assert moved("postino_logins_total", proto="smtp", result="failed") == 1
    assert moved("postino_logins_total", proto="imap", result="ok") == 3
    assert moved("postino_logins_total", proto="pop3", result="ok") == 1
    assert moved("postino_logins_total", proto="pop3", result="failed") == 1
    assert moved("postino_messages_received_total") == 1
    assert moved("postino_messages_delivered_total", where="local") == 1
    assert moved("postino_connections_total", listener="smtp") == 1
    assert moved("postino_connections_total", listener="submission") == 2
    assert moved("postino_connections_total", listener="imaps") == 4
    assert moved("postino_connections_total", listener="pop3s") == 2
    assert moved("postino_tls_handshake_failures_total") == 1
    assert moved("postino_delivery_seconds_count", proto="smtp") == 1
    # every IMAP command got one observation: LOGIN, SELECT, LOGOUT (+ CAPABILITY) x 3
    assert moved("postino_command_seconds_count", proto="imap") >= 9
    assert val(after, "postino_command_seconds_bucket", proto="imap", le="+Inf") == \
        val(after, "postino_command_seconds_count", proto="imap")
    workers = [k for k in after if k[0] == "postino_worker_resident_bytes"]
    assert len(workers) == 3
    assert all(after[k] > 1_000_000 for k in workers)


def worker_sessions(m):
    return {dict(k[1])["worker"]: v for k, v in m.items() if k[0] == "postino_worker_sessions"}


def test_new_connections_go_to_the_least_busy_worker(srv):
    """Clients that connect together and stay (a mail client's several connections, imaptest
    with logout=0) are spread over the workers instead of all landing on the one that woke
    first; postino_worker_sessions shows each worker's share."""
    n = 18   # under max_conn_per_ip (20)
    socks = [socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=10)
             for _ in range(n)]
    try:
        for s in socks:
            assert s.recv(512).startswith(b"* OK ")
        # every greeted connection is counted, and so is the scrape's own HTTP session (an
        # earlier scrape's may still be closing: at least, not exactly, n + 1)
        wait_until(lambda: sum(worker_sessions(scrape(srv)).values()) >= n + 1, timeout=30,
                   what="every connection counted in a worker's sessions")
        shares = worker_sessions(scrape(srv))
        assert len(shares) == 3, shares
        # balanced to within one session (6 each) while every worker is free to accept; 3 leaves
        # room for a worker that was busy for longer than the balancing wait (5 ms)
        assert min(shares.values()) >= 3, shares
    finally:
        for s in socks:
            s.close()


def test_queue_length_and_oldest_age(srv):
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
        s.starttls(context=srv.ctx())
        s.login(USER, srv.password)
        s.sendmail(USER, ["someone@unreachable.invalid"],
                   "From: %s\r\nSubject: q\r\n\r\nbody\r\n" % USER)
    m = scrape(srv)
    assert val(m, "postino_queue_messages") == 1
    assert 0 <= val(m, "postino_queue_oldest_seconds") < 60
    wait_until(lambda: val(scrape(srv), "postino_messages_deferred_total") == 1, timeout=60,
               what="the queue process's deferral counted")


def test_status_prints_the_same_at_a_glance(srv):
    m = scrape(srv)
    cp = subprocess.run([BIN, "status", "--data", srv.data], capture_output=True, text=True,
                        timeout=30)
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    assert "logins" in out and "imap %d ok" % val(m, "postino_logins_total", proto="imap",
                                                   result="ok") in out, out
    assert re.search(r"^queue %d messages, oldest \d+ s$" % val(m, "postino_queue_messages"),
                     out, re.M), out
    assert out.count("worker ") == 3, out


def test_status_without_admin_listener_says_what_to_do(tmp_path):
    s = Server(users=(USER,))
    try:
        cp = subprocess.run([BIN, "status", "--data", s.data], capture_output=True, text=True,
                            timeout=30)
        assert cp.returncode == 1
        assert "admin_port" in cp.stderr
    finally:
        s.stop()
