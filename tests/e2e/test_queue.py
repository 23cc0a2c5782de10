"""The outbound queue (issue 5): delivery to other servers found through DNS, retries, DSNs,
crash safety, hostile servers and the `postino queue` CLI.

Destinations resolve through a local unbound serving a test zone; the remote servers are
aiosmtpd sinks and raw-socket hostile servers on 127.0.0.x, all on one port (remote_smtp_port).
"""
import email
import email.policy
import glob
import os
import signal
import smtplib
import subprocess
import time
import uuid

import pytest

from postino_server import BIN, Server
from queuehelp import (ALICE, Dns, Hostile, Sink, free_port, log_text, make_msg,
                       outbound_conf, spool, stop_checked, submit, wait_for)

HOSTS = {"sinkA": "127.0.0.2", "sinkB": "127.0.0.3", "sinkC": "127.0.0.4", "hang": "127.0.0.5",
         "endless": "127.0.0.6", "nocrlf": "127.0.0.7", "tlsinject": "127.0.0.8",
         "down": "127.0.0.9", "relay": "127.0.0.11"}

RECORDS = [
    "r1.test. MX 10 mx1.r1.test.", "mx1.r1.test. A 127.0.0.2",
    "r2.test. MX 10 mxdown.r2.test.", "r2.test. MX 20 mx2.r2.test.",
    "mxdown.r2.test. A 127.0.0.9", "mx2.r2.test. A 127.0.0.3",
    "r3.test. A 127.0.0.4",
    "nullmx.test. MX 0 .",
    "down.test. MX 10 mx.down.test.", "mx.down.test. A 127.0.0.9",
    "h-hang.test. A 127.0.0.5", "h-endless.test. A 127.0.0.6",
    "h-nocrlf.test. A 127.0.0.7", "h-tls.test. A 127.0.0.8",
    "xn--bcher-kva.test. MX 10 mx1.r1.test.",   # bücher.test, for the IDN lookup
]


@pytest.fixture(scope="module")
def net():
    dns = Dns(["r1.test", "r2.test", "r3.test", "nullmx.test", "down.test", "h-hang.test",
               "h-endless.test", "h-nocrlf.test", "h-tls.test", "nx.test", "xn--bcher-kva.test"],
              RECORDS)
    port = free_port(list(HOSTS.values()))
    sinks = {k: Sink(HOSTS[k], port) for k in ("sinkA", "sinkB", "sinkC")}
    hostile = {k: Hostile(HOSTS[k], port, mode) for k, mode in
               (("hang", "hang-after-data"), ("endless", "endless-multiline"),
                ("nocrlf", "no-crlf"), ("tlsinject", "starttls-inject"))}
    yield {"dns": dns, "port": port, "sinks": sinks, "hostile": hostile}
    for s in sinks.values():
        s.stop()
    for h in hostile.values():
        h.stop()
    dns.stop()


@pytest.fixture(scope="module")
def srv(net):
    # under ASan, freed memory is not held in the quarantine: it would count as RSS that the
    # queue process keeps, and test_hostile_servers_are_bounded measures exactly that
    asan = os.environ.get("ASAN_OPTIONS", "")
    # log_debug: a held message is seen in the log (event=held)
    s = Server(extra_conf=outbound_conf(net, "log_debug = yes\n"),
               users=(ALICE, "bob@example.test"),
               wait_for=("smtp", "submission"),
               env={"ASAN_OPTIONS": (asan + ":" if asan else "") +
                    "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"})
    yield s
    stop_checked(s)


def cli(srv, *args, check=None):
    cp = subprocess.run([BIN, "queue", *args, "--data", srv.data], capture_output=True,
                        text=True, timeout=30)
    if check is not None:
        assert cp.returncode == check, (cp.returncode, cp.stdout, cp.stderr)
    return cp


def inbox_messages(srv, user=ALICE):
    out = []
    for d in ("new", "cur"):
        for p in glob.glob(os.path.join(srv.maildir(user), d, "*")):
            with open(p, "rb") as f:
                out.append(f.read())
    return out


def find_dsn(srv, token, action, user=ALICE):
    """A DSN in the user's INBOX whose returned part mentions token, with that Action."""
    for raw in inbox_messages(srv, user):
        if token.encode() not in raw or b"multipart/report" not in raw:
            continue
        m = email.message_from_bytes(raw, policy=email.policy.compat32)
        if m.get_content_type() != "multipart/report":
            continue
        if m.get_param("report-type") != "delivery-status":
            continue
        parts = m.get_payload()
        ds = [p for p in parts if p.get_content_type() == "message/delivery-status"]
        if not ds:
            continue
        blocks = ds[0].get_payload()   # per-message fields, then one block per recipient
        if any(b.get("Action", "").lower() == action for b in blocks[1:]):
            return m, parts, blocks
    return None


def queue_pid(srv):
    try:
        with open(os.path.join(srv.data, "queue", "queue.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def entry_exists(srv, qid):
    return os.path.exists(os.path.join(srv.data, "queue", qid + ".env"))


# ---------------------------------------------------------------- delivery

def test_delivery_exact_bytes_and_envelope(srv, net):
    token = uuid.uuid4().hex
    body = make_msg(token, "u1@r1.test",
                    b".a line starting with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n"
                    b"trailing spaces   \r\n\tand a tab\r\n")
    qid = submit(srv, ["u1@r1.test"], body)
    sink = net["sinks"]["sinkA"].handler
    got = wait_for(lambda: sink.find(token), 20)
    assert len(got) == 1, log_text(srv)
    mail_from, rcpts, content, opts = got[0]
    assert mail_from == ALICE
    assert rcpts == ["u1@r1.test"]
    # the DKIM signatures made at submission (test_dkim.py checks them), our Received: header,
    # no Return-Path (the final delivery adds that), then the message exactly as submitted
    assert content.startswith(b"DKIM-Signature: ")
    assert content[content.index(b"\r\nReceived: ") + 2:].startswith(b"Received: ")
    assert b"Return-Path:" not in content
    assert content.endswith(body), content
    assert b"\r\n" + body == content[content.index(b"\r\nFrom: <alice"):]
    assert any(o.startswith("SIZE=") for o in opts)
    assert wait_for(lambda: not entry_exists(srv, qid), 10), "entry not removed after 250"


def test_mx_preference_and_fallback(srv, net):
    token = uuid.uuid4().hex
    submit(srv, ["u2@r2.test"], make_msg(token, "u2@r2.test"))
    assert wait_for(lambda: net["sinks"]["sinkB"].handler.find(token), 20), log_text(srv)
    assert "ip=127.0.0.9" in log_text(srv)   # the preferred MX was tried first


def test_no_mx_uses_a_record(srv, net):
    token = uuid.uuid4().hex
    submit(srv, ["u3@r3.test"], make_msg(token, "u3@r3.test"))
    assert wait_for(lambda: net["sinks"]["sinkC"].handler.find(token), 20), log_text(srv)


def test_multiple_domains_one_message(srv, net):
    token = uuid.uuid4().hex
    submit(srv, ["m1@r1.test", "m2@r1.test", "m3@r3.test"], make_msg(token, "m1@r1.test"))
    a = wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 20)
    c = wait_for(lambda: net["sinks"]["sinkC"].handler.find(token), 20)
    assert a and c
    assert sorted(a[0][1]) == ["m1@r1.test", "m2@r1.test"]   # one transaction per domain
    assert c[0][1] == ["m3@r3.test"]


def test_temporary_failure_then_success(srv, net):
    token = uuid.uuid4().hex
    rcpt = "temp-%s@r1.test" % token[:8]
    qid = submit(srv, [rcpt], make_msg(token, rcpt))
    got = wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 30)
    assert got, log_text(srv)
    assert net["sinks"]["sinkA"].handler.temp_seen[rcpt] == 2
    assert "event=deferred id=%s" % qid in log_text(srv)


def test_connection_reuse_per_destination(srv, net):
    cli(srv, "hold", "--sender", ALICE, check=0)
    try:
        tokens = ["reuse-%d-%s" % (i, uuid.uuid4().hex) for i in range(10)]
        for i, t in enumerate(tokens):
            submit(srv, ["reuse%d@r1.test" % i], make_msg(t, "reuse%d@r1.test" % i))
    finally:
        cli(srv, "release", "--sender", ALICE, check=0)
    sink = net["sinks"]["sinkA"].handler
    assert wait_for(lambda: all(sink.find(t) for t in tokens), 20), log_text(srv)
    with sink.lock:
        peers = {sink.peers[i] for i, m in enumerate(sink.messages)
                 if any(t.encode() in m[2] for t in tokens)}
    assert len(peers) < len(tokens)   # several messages per connection


# ---------------------------------------------------------------- bounces and DSNs

def test_permanent_failure_bounces_with_rfc3464_dsn(srv, net):
    token = uuid.uuid4().hex
    rcpt = "reject-%s@r1.test" % token[:8]
    qid = submit(srv, [rcpt], make_msg(token, rcpt))
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 20)
    assert found, log_text(srv)
    m, parts, blocks = found
    assert m["From"].startswith("Mail Delivery System")
    assert m["To"] == "<%s>" % ALICE
    assert m["Auto-Submitted"] == "auto-replied"
    assert parts[0].get_content_type() == "text/plain"
    human = parts[0].get_payload()
    assert rcpt in human and "does not exist" in human and "What you can do" in human
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.test"
    assert blocks[0]["Arrival-Date"]
    rb = blocks[1]
    assert rb["Final-Recipient"] == "rfc822; " + rcpt
    assert rb["Action"] == "failed"
    assert rb["Status"] == "5.1.1"
    assert rb["Remote-MTA"] == "dns; mx1.r1.test"
    assert rb["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert parts[2].get_content_type() == "text/rfc822-headers"   # no RET=FULL: headers only
    assert wait_for(lambda: not entry_exists(srv, qid), 10)


def test_dsn_ret_full_envid_orcpt(srv, net):
    token = uuid.uuid4().hex
    rcpt = "reject-%s@r1.test" % token[:8]
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
        s.starttls(context=srv.ctx())
        s.login(ALICE, srv.password)
        s.ehlo()
        assert s.has_extn("dsn")
        assert s.mail(ALICE, ["RET=FULL", "ENVID=env+2B" + token[:6]])[0] == 250
        assert s.rcpt(rcpt, ["NOTIFY=FAILURE", "ORCPT=rfc822;orig+40x.test"])[0] == 250
        assert s.data(make_msg(token, rcpt))[0] == 250
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 20)
    assert found, log_text(srv)
    m, parts, blocks = found
    assert blocks[0]["Original-Envelope-Id"] == "env+" + token[:6]
    assert blocks[1]["Original-Recipient"] == "rfc822; orig@x.test"
    assert parts[2].get_content_type() == "message/rfc822"   # RET=FULL: the whole message
    assert ("hello " + token) in parts[2].as_string()


def test_notify_never_gets_no_dsn(srv, net):
    token = uuid.uuid4().hex
    rcpt = "reject-%s@r1.test" % token[:8]
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
        s.starttls(context=srv.ctx())
        s.login(ALICE, srv.password)
        s.ehlo()
        s.mail(ALICE)
        assert s.rcpt(rcpt, ["NOTIFY=NEVER"])[0] == 250
        code, resp = s.data(make_msg(token, rcpt))
        qid = resp.decode().split("message ")[1].split()[0]
    # a failure DSN is stored (and logged) before the entry is removed: after that, none came
    assert wait_for(lambda: "event=removed id=%s" % qid in log_text(srv), 20), log_text(srv)
    assert "event=bounced id=%s" % qid in log_text(srv)
    assert "event=dsn id=%s" % qid not in log_text(srv)
    assert not find_dsn(srv, token, "failed")


def test_null_mx_bounces_at_once(srv, net):
    token = uuid.uuid4().hex
    t0 = time.time()
    submit(srv, ["u@nullmx.test"], make_msg(token, "u@nullmx.test"))
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 10)
    assert found, log_text(srv)
    assert time.time() - t0 < 10
    assert found[2][1]["Status"] == "5.1.10"
    assert "null MX" in found[1][0].get_payload()


def test_nonexistent_domain_bounces(srv, net):
    token = uuid.uuid4().hex
    submit(srv, ["u@nope.nx.test"], make_msg(token, "u@nope.nx.test"))
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 10)
    assert found, log_text(srv)
    assert found[2][1]["Status"] == "5.1.2"


def test_no_dsn_to_null_sender(srv, net):
    token = uuid.uuid4().hex
    qid = spool(srv.data, "", ["reject-null@r1.test"], make_msg(token, "reject-null@r1.test"))
    assert wait_for(lambda: "event=bounced id=%s" % qid in log_text(srv), 20), log_text(srv)
    assert wait_for(lambda: not entry_exists(srv, qid), 10)
    assert "event=dsn id=%s" % qid not in log_text(srv)
    assert not any(token.encode() in m for m in inbox_messages(srv))


def test_dsn_to_a_remote_sender_goes_through_the_queue(srv, net):
    # a sender that is not one of ours (port 25 mail forwarded elsewhere): the report is queued
    # from the null sender to the sender's own server, and the failed entry is removed
    token = uuid.uuid4().hex
    rcpt = "reject-%s@r1.test" % token[:8]
    sender = "back-%s@r3.test" % token[:8]
    qid = spool(srv.data, sender, [rcpt], make_msg(token, rcpt))
    got = wait_for(lambda: net["sinks"]["sinkC"].handler.find(token), 20)
    assert got, log_text(srv)
    mail_from, rcpts, content, _ = got[0]
    assert mail_from == "<>"
    assert rcpts == [sender]
    m = email.message_from_bytes(content, policy=email.policy.compat32)
    assert m.get_content_type() == "multipart/report"
    assert m["To"] == "<%s>" % sender
    blocks = [p for p in m.get_payload()
              if p.get_content_type() == "message/delivery-status"][0].get_payload()
    assert blocks[1]["Final-Recipient"] == "rfc822; " + rcpt
    assert blocks[1]["Action"] == "failed"
    assert "event=dsn id=%s kind=failure to=<%s>" % (qid, sender) in log_text(srv)
    assert wait_for(lambda: not entry_exists(srv, qid), 10)
    assert not glob.glob(os.path.join(srv.data, "tmp", "dsn.*"))   # the temp file is removed


def test_size_limit_of_peer_end_of_data_5xx(srv, net):
    token = uuid.uuid4().hex
    rcpt = "bigfail@r1.test"
    submit(srv, [rcpt], make_msg(token, rcpt))
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 20)
    assert found and found[2][1]["Status"] == "5.3.4"


def test_smtputf8_message_bounces_when_peer_lacks_it(srv, net):
    # the server on h-hang.test offers no SMTPUTF8: the message must not be sent at all
    token = uuid.uuid4().hex
    qid = spool(srv.data, ALICE, ["u8@h-hang.test"], make_msg(token, "u8@h-hang.test"),
                smtputf8=1)
    found = wait_for(lambda: find_dsn(srv, token, "failed"), 15)
    assert found, log_text(srv)
    assert found[2][1]["Status"] == "5.6.7"
    assert "SMTPUTF8" in found[1][0].get_payload()
    assert wait_for(lambda: not entry_exists(srv, qid), 5)


def test_utf8_domain_is_looked_up_as_its_a_label(srv, net):
    # DNS knows bücher.test only as xn--bcher-kva.test (RFC 5891): the MX lookup must use it
    token = uuid.uuid4().hex
    rcpt = "x@b\u00fccher.test"
    spool(srv.data, ALICE, [rcpt], make_msg(token, "x@xn--bcher-kva.test"), smtputf8=1)
    got = wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 15)
    assert got, log_text(srv)
    assert got[0][1] == [rcpt], got[0][1]


# ---------------------------------------------------------------- timeouts, hostile servers

def test_timeout_after_data_defers(srv, net):
    token = uuid.uuid4().hex
    qid = submit(srv, ["u@h-hang.test"], make_msg(token, "u@h-hang.test"))
    def deferred():
        cp = cli(srv, "show", qid)
        return cp.returncode == 0 and "timed out" in cp.stdout
    assert wait_for(deferred, 20), cli(srv, "show", qid).stdout + log_text(srv)
    assert "pending" in cli(srv, "show", qid).stdout
    cli(srv, "delete", qid, check=0)


@pytest.mark.parametrize("domain,expect", [
    ("h-endless.test", "more than 100 lines"),
    ("h-nocrlf.test", "longer than"),
    ("h-tls.test", "after its STARTTLS reply"),
])
def test_hostile_servers_are_bounded(srv, net, domain, expect):
    token = uuid.uuid4().hex
    pid = queue_pid(srv)
    assert pid
    before = rss_kb(pid)
    t0 = time.time()
    qid = submit(srv, ["u@" + domain], make_msg(token, "u@" + domain))
    def deferred():
        cp = cli(srv, "show", qid)
        return cp.returncode == 0 and expect in cp.stdout
    assert wait_for(deferred, 20), cli(srv, "show", qid).stdout + log_text(srv)
    assert time.time() - t0 < 15
    assert queue_pid(srv) == pid, "the queue process died"
    # what the hostile peer sent is not held: the queue process grows by less than 64 MB
    assert rss_kb(pid) - before < 64 * 1024, (before, rss_kb(pid))
    cli(srv, "delete", qid, check=0)


# ---------------------------------------------------------------- crash safety

def test_kill9_during_delivery_loses_nothing(srv, net):
    tokens = []
    for i in range(30):
        t = "k9-%d-%s" % (i, uuid.uuid4().hex)
        tokens.append(t)
        submit(srv, ["slow%d@r1.test" % i],
               make_msg(t, "slow%d@r1.test" % i, (b"x" * 70 + b"\r\n") * 300))
        if i % 6 == 5:
            pid = queue_pid(srv)
            if pid:
                os.kill(pid, signal.SIGKILL)
    for _ in range(3):
        time.sleep(0.4)   # the subject: kills at moments the queue does not choose
        pid = wait_for(lambda: queue_pid(srv), 10)
        if pid:
            os.kill(pid, signal.SIGKILL)
    sink = net["sinks"]["sinkA"].handler
    def all_there():
        return all(sink.find(t) for t in tokens)
    assert wait_for(all_there, 60), ([t for t in tokens if not sink.find(t)], log_text(srv)[-6000:])
    assert "event=queue-died" in log_text(srv)


def test_damaged_entry_is_quarantined_not_sent(srv, net):
    token = uuid.uuid4().hex
    qid = spool(srv.data, ALICE, ["q@r1.test"], make_msg(token, "q@r1.test"), crc=0x12345678)
    qpath = os.path.join(srv.data, "queue", "quarantine", qid + ".msg")
    assert wait_for(lambda: os.path.exists(qpath), 10), log_text(srv)
    assert "event=quarantined id=%s" % qid in log_text(srv)
    # quarantined instead of loaded: it left the spool without an attempt, none can follow
    assert "event=sent id=%s" % qid not in log_text(srv)
    assert not net["sinks"]["sinkA"].handler.find(token)


def test_restart_with_a_large_queue_keeps_accepting_and_delivering(net):
    s = Server(extra_conf=outbound_conf(net), users=(ALICE,), wait_for=("smtp", "submission"))
    try:
        bulk = "bulk@example.test"
        cli(s, "hold", "--sender", bulk, check=0)
        qdir = os.path.join(s.data, "queue")
        full = b"Return-Path: <bulk@example.test>\r\n" + make_msg("bulk", "b@r1.test")
        import zlib
        crc = zlib.crc32(full)
        n = int(os.environ.get("POSTINO_BIG_QUEUE", "20000"))   # 100000: the figure
        for i in range(n):
            qid = "bulk%012x" % i
            with open(os.path.join(qdir, qid + ".msg"), "wb") as f:
                f.write(full)
            with open(os.path.join(qdir, qid + ".env"), "w") as f:
                f.write("version 1\nid %s\narrived %d\nfrom <%s>\nsize %d\ncrc32 %08x\n"
                        "rcpt <b@r1.test> notify=- orcpt=-\n" % (qid, time.time(), bulk,
                                                                  len(full), crc))
        pid = queue_pid(s)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: queue_pid(s) not in (None, pid), 10)
        # the restarted queue process reads 20,000 entries; new mail is taken and sent meanwhile
        token = uuid.uuid4().hex
        t0 = time.time()
        submit(s, ["fresh@r1.test"], make_msg(token, "fresh@r1.test"))
        assert time.time() - t0 < 10
        assert wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 30), log_text(s)[-3000:]
        assert not net["sinks"]["sinkA"].handler.find("hello bulk")
        print("queued %d; new mail accepted in %.2fs" % (n, time.time() - t0))
        assert "held: yes (the sender is held)" in cli(s, "show", "bulk%012x" % (n - 1)).stdout
    finally:
        stop_checked(s)


def test_reload_restarts_the_queue_process(srv, net):
    pid = queue_pid(srv)
    os.kill(srv.proc.pid, signal.SIGHUP)
    assert wait_for(lambda: queue_pid(srv) not in (None, pid), 15), log_text(srv)[-3000:]
    token = uuid.uuid4().hex
    submit(srv, ["afterhup@r1.test"], make_msg(token, "afterhup@r1.test"))
    assert wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 20), log_text(srv)[-3000:]
    assert "event=queue-died" not in log_text(srv).split("event=reload")[-1]


# ---------------------------------------------------------------- CLI

def test_cli_list_show_hold_release_delete_flush(srv, net):
    token = uuid.uuid4().hex
    qid = submit(srv, ["stuck@down.test"], make_msg(token, "stuck@down.test"))
    assert wait_for(lambda: "mx.down.test" in cli(srv, "show", qid).stdout, 15)
    out = cli(srv, "list", check=0).stdout
    assert qid in out and "<stuck@down.test>" in out
    show = cli(srv, "show", qid, check=0).stdout
    assert "from: <%s>" % ALICE in show and "pending" in show and "attempts:" in show
    cli(srv, "hold", qid, check=0)
    assert "HELD" in [l for l in cli(srv, "list").stdout.splitlines() if qid in l][0]
    cli(srv, "release", qid, check=0)
    assert "HELD" not in [l for l in cli(srv, "list").stdout.splitlines() if qid in l][0]
    cli(srv, "flush", check=0)
    cli(srv, "delete", qid, check=0)
    assert not entry_exists(srv, qid)
    cli(srv, "show", qid, check=1)
    cli(srv, "delete", qid, check=1)
    cli(srv, "hold", "0000000000000000", check=1)
    cli(srv, "bogus", check=2)
    cli(srv, "show", check=2)
    for sub in ("list", "show", "flush", "hold", "release", "delete"):
        cp = subprocess.run([BIN, "queue", sub, "--help"], capture_output=True, text=True)
        assert cp.returncode == 0 and "usage: postino queue" in cp.stdout
    cp = subprocess.run([BIN, "queue"], capture_output=True, text=True)
    assert cp.returncode == 2


def test_hold_sender_keeps_mail_until_released(srv, net):
    bob = "bob@example.test"
    cli(srv, "hold", "--sender", bob, check=0)
    token = uuid.uuid4().hex
    qid = submit(srv, ["held@r1.test"], make_msg(token, "held@r1.test").replace(
        b"alice@example.test", bob.encode()), sender=bob, user=bob)
    # the queue loaded it and held it back: no attempt can be under way
    assert wait_for(lambda: "event=held id=%s" % qid in log_text(srv), 15), log_text(srv)[-3000:]
    assert "event=attempt-done id=%s" % qid not in log_text(srv)
    assert not net["sinks"]["sinkA"].handler.find(token)
    assert "HELD" in [l for l in cli(srv, "list").stdout.splitlines() if qid in l][0]
    cli(srv, "release", "--sender", bob, check=0)
    assert wait_for(lambda: net["sinks"]["sinkA"].handler.find(token), 15), log_text(srv)
    cli(srv, "hold", "--sender", "not-an-address", check=2)


# ---------------------------------------------------------------- timers: delay notice, expiry

@pytest.fixture(scope="module")
def srv_timers(net):
    s = Server(extra_conf=outbound_conf(net, "queue_delay_notice = 2s\nqueue_lifetime = 7s\n"),
               users=(ALICE,), wait_for=("smtp", "submission"))
    yield s
    stop_checked(s)


def test_delay_notice_then_expiry(srv_timers, net):
    srv = srv_timers
    token = uuid.uuid4().hex
    qid = submit(srv, ["late@down.test"], make_msg(token, "late@down.test"))
    delayed = wait_for(lambda: find_dsn(srv, token, "delayed"), 15)
    assert delayed, log_text(srv)
    m, parts, blocks = delayed
    assert blocks[1]["Status"].startswith("4.")
    assert blocks[1]["Will-Retry-Until"]
    assert "do not need to send it again" in parts[0].get_payload()
    failed = wait_for(lambda: find_dsn(srv, token, "failed"), 20)
    assert failed, log_text(srv)
    assert failed[2][1]["Status"].startswith("5.4.")
    assert "tried for 7 seconds" in failed[1][0].get_payload()
    assert wait_for(lambda: not entry_exists(srv, qid), 5)
    # exactly one delay notice
    n = sum(1 for raw in inbox_messages(srv) if token.encode() in raw and b"Action: delayed" in raw)
    assert n == 1


# ---------------------------------------------------------------- smarthost

@pytest.fixture(scope="module")
def relay(net, tmp_path_factory):
    """An aiosmtpd relay on 127.0.0.11 that requires STARTTLS and AUTH."""
    import ssl
    from aiosmtpd.smtp import AuthResult
    from queuehelp import Recorder
    from aiosmtpd.controller import Controller
    d = tmp_path_factory.mktemp("relay")
    cert, key = str(d / "relay.pem"), str(d / "relay.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=relay.test"], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == b"relayuser" and auth_data.password == b"relay-Secret"
        return AuthResult(success=ok)

    h = Recorder("relay")
    c = Controller(h, hostname=HOSTS["relay"], port=net["port"], tls_context=ctx,
                   require_starttls=True, authenticator=authenticator, auth_require_tls=True,
                   auth_required=True, ready_timeout=10)
    c.start()
    yield h, logins
    c.stop()


def test_relayhost_tls_and_auth(net, relay):
    handler, logins = relay
    conf = outbound_conf(net, "relayhost = [127.0.0.11]:%d\nrelayhost_user = relayuser\n"
                         "relayhost_password = relay-Secret\nrelayhost_tls_verify = no\n"
                         % net["port"])
    s = Server(extra_conf=conf, users=(ALICE,), wait_for=("smtp", "submission"))
    try:
        token = uuid.uuid4().hex
        # a domain with no DNS at all: the relay host takes everything
        submit(s, ["far@unresolvable.example", "u@r1.test"], make_msg(token, "far@unresolvable.example"))
        got = wait_for(lambda: handler.find(token), 20)
        assert got, log_text(s)
        assert sorted(got[0][1]) == ["far@unresolvable.example", "u@r1.test"]
        assert (b"relayuser", b"relay-Secret") in [(l[1], l[2]) for l in logins]
        assert not net["sinks"]["sinkA"].handler.find(token)
        out = subprocess.run([BIN, "config", "show", "--data", s.data], capture_output=True,
                             text=True).stdout
        assert "relay-Secret" not in out
    finally:
        stop_checked(s)


def test_relayhost_certificate_is_verified_by_default(net, relay):
    handler, _ = relay
    conf = outbound_conf(net, "relayhost = [127.0.0.11]:%d\nrelayhost_user = relayuser\n"
                         "relayhost_password = relay-Secret\n" % net["port"])
    s = Server(extra_conf=conf, users=(ALICE,), wait_for=("smtp", "submission"))
    try:
        token = uuid.uuid4().hex
        qid = submit(s, ["far@unresolvable.example"], make_msg(token, "far@unresolvable.example"))
        def deferred():
            cp = cli(s, "show", qid)
            return cp.returncode == 0 and "certificate" in cp.stdout
        assert wait_for(deferred, 20), cli(s, "show", qid).stdout + log_text(s)
        assert not handler.find(token)
    finally:
        stop_checked(s)


@pytest.mark.parametrize("limits,bound", [
    ("queue_concurrency = 10\nqueue_concurrency_per_domain = 2\n", 2),   # per destination
    ("queue_concurrency = 3\nqueue_concurrency_per_domain = 20\n", 3),   # overall
])
def test_concurrency_limits(net, limits, bound):
    s = Server(extra_conf=outbound_conf(net, limits), users=(ALICE,),
               wait_for=("smtp", "submission"))
    try:
        sink = net["sinks"]["sinkA"].handler
        cli(s, "hold", "--sender", ALICE, check=0)
        tokens = [uuid.uuid4().hex for _ in range(12)]
        for i, t in enumerate(tokens):
            submit(s, ["conc%d@r1.test" % i], make_msg(t, "conc%d@r1.test" % i))
        with sink.lock:
            sink.max_in_data = 0
        cli(s, "release", "--sender", ALICE, check=0)   # all twelve are due at once
        assert wait_for(lambda: all(sink.find(t) for t in tokens), 40), log_text(s)[-3000:]
        # each DATA takes 0.4 s at the sink: more connections at once would show here
        assert sink.max_in_data == bound, (sink.max_in_data, bound)
    finally:
        stop_checked(s)


def test_leftover_report_temp_files_are_removed_at_start(net):
    # a DSN or TLS report being written when the queue process died is never acknowledged:
    # its temp file goes at the next start (TLS reports' were left behind)
    def leftovers(s):
        os.makedirs(os.path.join(s.data, "tmp"), exist_ok=True)
        for name in ("dsn.4242.AbCdEf", "tlsrpt.4242.GhIjKl"):
            with open(os.path.join(s.data, "tmp", name), "w") as f:
                f.write("From: half a report\r\n")
    s = Server(extra_conf=outbound_conf(net), users=(ALICE,), wait_for=("smtp", "submission"),
               prepare=leftovers)
    try:
        tmp = os.path.join(s.data, "tmp")
        assert wait_for(lambda: not glob.glob(os.path.join(tmp, "dsn.*")) and
                        not glob.glob(os.path.join(tmp, "tlsrpt.*")), 15), os.listdir(tmp)
    finally:
        stop_checked(s)
