"""Issue 12 (a): spam filtering through a real rspamd (Debian's rspamd 3.4), whose proxy worker
speaks milter. rspamd runs from a throw-away configuration directory: the packaged
/etc/rspamd as CONFDIR, our own top-level rspamd.conf and local.d overrides (proxy in milter
mode scanning by itself, no redis, no DNS servers, milter headers on for local senders), pid,
databases and log in a temp dir, loopback high port. A GTUBE message is refused over port 25
with rspamd's 5xx; a clean one is delivered with rspamd's X-Spamd-Result / X-Rspamd-* headers,
read back over IMAP.
"""
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import smtplib
import subprocess
import time

import pytest

from conftest import USERS, start_server, finish_server, let_workers_through, wait_until
from smtphelp import SMTP, message
from test_milter import free_port

ALICE = "alice@example.test"
# The milters are under test, not the SPF/DKIM/DMARC checks of port 25 (test_inbound_auth.py):
# without a test DNS zone their lookups would only wait for the machine's resolvers.
BASE = "smtp_greet_pause = 0\ninbound_auth = no\n"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"

TOP_CONF = """
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%(port)d";
    milter = yes;
    timeout = 120s;
    upstream "local" { default = yes; self_scan = yes; }
    count = 1;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}
"""
# no resolver: nothing may leave the machine; a tiny public-suffix list and no hyperscan
# compilation keep the start quick on a busy machine
OPTIONS = """
dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
url_tld = "%(dir)s/tld.dat";
disable_hyperscan = true;
"""
MILTER_HEADERS = """
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
"""


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    if not os.path.exists(RSPAMD):
        pytest.fail("rspamd is not installed: scripts/deps.sh --test installs it")
    d = str(tmp_path_factory.mktemp("rspamd"))
    let_workers_through(d)
    os.makedirs(os.path.join(d, "local.d"))
    port = free_port()
    with open(os.path.join(d, "rspamd.conf"), "w") as f:
        f.write(TOP_CONF % {"port": port})
    with open(os.path.join(d, "local.d", "options.inc"), "w") as f:
        f.write(OPTIONS % {"dir": d})
    with open(os.path.join(d, "local.d", "milter_headers.conf"), "w") as f:
        f.write(MILTER_HEADERS)
    with open(os.path.join(d, "tld.dat"), "w") as f:
        f.write("com\nnet\norg\ntest\n")
    args = [RSPAMD, "-f", "-c", os.path.join(d, "rspamd.conf")]
    for var in ("LOCAL_CONFDIR", "DBDIR", "RUNDIR", "LOGDIR"):
        args.append("--var=%s=%s" % (var, d))
    args.append("--var=CONFDIR=/etc/rspamd")
    if os.geteuid() == 0:
        # rspamd refuses to run its workers as root
        user = "_rspamd" if _user_exists("_rspamd") else "nobody"
        pw = pwd.getpwnam(user)
        for dirpath, dirs, files in os.walk(d):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in files]:
                os.chown(n, pw.pw_uid, pw.pw_gid)
        args += ["-u", user, "-g", grp.getgrgid(pw.pw_gid).gr_name]
    out = open(os.path.join(d, "stdout.log"), "wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def up():
        if proc.poll() is not None:
            raise AssertionError("rspamd exited %s:\n%s" % (proc.returncode, _tail(d)))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    try:
        wait_until(up, 240, 0.2, "rspamd's proxy worker to listen")
        yield port, d
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        out.close()


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _tail(d):
    text = ""
    for n in ("stdout.log", "rspamd.log"):
        try:
            text += open(os.path.join(d, n), errors="replace").read()[-3000:]
        except OSError:
            pass
    return text


@pytest.fixture(scope="module")
def rsrv(tmp_path_factory, pki, rspamd):
    root = str(tmp_path_factory.mktemp("rspamd-srv"))
    let_workers_through(root)
    srv = start_server(root, pki, extra_conf=(
        BASE + "smtpd_milters = inet:127.0.0.1:%d\n"
        "milter_default_action = tempfail\n" % rspamd[0]))
    yield srv
    finish_server(srv)


def send(srv, token, body):
    msg = message(token, subject="rspamd test " + token, body=body)
    with SMTP(srv.smtp_port) as s:
        try:
            s.sendmail("sender@remote.test", [ALICE], msg)
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode("utf-8", "replace")


def test_gtube_refused_over_port_25(rsrv, rspamd, token):
    code, text = send(rsrv, token, "Hello,\r\n\r\n%s\r\n\r\nBye\r\n" % GTUBE)
    assert 500 <= code < 600, (code, text, _tail(rspamd[1]))
    assert "Rejected by the spam filter" in text and "gtube" in text.lower(), text
    assert not rsrv.grep_store(token), "the spam is stored nowhere"


def test_clean_message_delivered_with_rspamd_headers(rsrv, rspamd, token):
    body = ("Hi Alice,\r\n\r\nthe minutes of Tuesday's meeting are below; the next one is "
            "on Thursday at ten.\r\n\r\nRegards,\r\nBob\r\n")
    code, text = send(rsrv, token, body)
    assert code == 250, (code, text, _tail(rspamd[1]))
    m = imaplib.IMAP4("127.0.0.1", rsrv.ports["imap"], timeout=10)
    try:
        m.starttls(ssl_context=rsrv.ssl_context())
        m.login(ALICE, USERS[ALICE])
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "SUBJECT", '"rspamd test %s"' % token)
        assert typ == "OK" and data[0], "the clean message is in the INBOX"
        typ, data = m.fetch(data[0].split()[-1], "(BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        hdr = data[0][1].decode()
        text = data[1][1].decode()
    finally:
        m.logout()
    assert "X-Spamd-Result:" in hdr or "X-Spam-Status:" in hdr, hdr
    assert "X-Rspamd-Server:" in hdr or "X-Rspamd-Queue-Id:" in hdr, hdr
    assert "minutes of Tuesday's meeting" in text


def test_one_rspamd_connection_judges_every_message_of_a_session(rsrv, rspamd, token):
    # the milter connection is kept for the whole SMTP session (as Postfix does): a spam
    # refused, an aborted transaction (RSET after RCPT), then a clean message, all judged
    # over the same connection
    clean = message(token + "c", subject="rspamd test %sc" % token,
                    body="Hi Alice,\r\n\r\nlunch on Friday?\r\n\r\nBob\r\n")
    spam = message(token + "s", subject="rspamd test %ss" % token,
                   body="Hello,\r\n\r\n%s\r\n" % GTUBE)
    with SMTP(rsrv.smtp_port) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("sender@remote.test", [ALICE], spam)
        assert 500 <= e.value.smtp_code < 600, (e.value, _tail(rspamd[1]))
        assert s.mail("sender@remote.test")[0] == 250
        assert s.rcpt(ALICE)[0] == 250
        assert s.rset()[0] == 250
        assert s.sendmail("sender@remote.test", [ALICE], clean) == {}
    assert rsrv.find_messages(ALICE, token + "c"), _tail(rspamd[1])
    assert not rsrv.grep_store(token + "s")
    log = rsrv.log_bytes()
    assert b"event=milter-failed" not in log, log[-3000:]
