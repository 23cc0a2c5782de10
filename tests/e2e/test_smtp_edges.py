"""SMTP edge cases of issue 11: RCPT TO:<Postmaster> and postmaster@ every hosted domain (RFC 5321
4.5.1), internationalised domains and local parts (RFC 6531, IDNA with libidn2), the early-talker
refusal and the directory-harvest brake on port 25, and the memory a pre-auth client can make a
worker hold.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_smtp_edges.py
"""
import os
import poplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (POSTINO_BIN, USERS, open_connections, postino, start_server, finish_server,
                      wait_until)
from smtphelp import Raw, auth_plain_arg, message

IDN_U = "b\u00fccher.example"          # bücher.example
IDN_A = "xn--bcher-kva.example"
UTF8_LOCAL = "j\u00f6s\u00e9"          # jösé
UTF8_LOCAL_DIR = "j%C3%B6s%C3%A9"      # store_account_path escapes non-ASCII octets
PW = "Idn-Secret-77"


@pytest.fixture(scope="module")
def srv(workdir, pki):
    # the greet pause and the harvest brake keep their defaults (1 s; 3 fast, 1 s each, 421 at
    # 10); one worker, so the pregreet pass a client earns is seen by its next connection
    s = start_server(os.path.join(workdir, "edges"), pki,
                     extra_conf="max_conn_per_ip = 50\nworkers = 1\n")
    yield s
    finish_server(s)


def files_with(srv, domain_dir, local_dir, token):
    """Message files under mail/<domain_dir>/<local_dir>/new holding token."""
    d = os.path.join(srv.data, "mail", domain_dir, local_dir, "new")
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            if token.encode() in f.read():
                out.append(n)
    return out


def send_raw(port, rcpt, token, utf8=False, sender="sender@remote.test", params=""):
    """One message over a raw connection to rcpt; returns (RCPT reply, end-of-data reply)."""
    with Raw(port) as c:
        c.ehlo()
        r = c.cmd(("MAIL FROM:<%s>%s" % (sender, " SMTPUTF8" if utf8 else "")).encode())
        assert r.code == 250, r
        rr = c.cmd(("RCPT TO:%s%s" % (rcpt, params)).encode("utf-8"))
        if rr.code != 250:
            return rr, None
        r = c.cmd("DATA")
        assert r.code == 354, r
        return rr, c.data_body(message(token, to="postmaster"))


# ---------------------------------------------------------------- postmaster (RFC 5321 4.5.1)

def test_rcpt_postmaster_without_domain_is_accepted_and_delivered(srv, token):
    # hostname mail.example.test: the server's domain is example.test, whose oldest account
    # (the first the fixture created) is alice
    first = next(iter(USERS))
    assert first == "alice@example.test"
    for form in ("<Postmaster>", "<POSTMASTER>", "<postmaster>"):
        rr, rd = send_raw(srv.smtp_port, form, token + form)
        assert rr.code == 250, (form, rr)
        assert rd.code == 250, (form, rd)
        wait_until(lambda: srv.find_messages(first, token + form), 5, 0.05,
                   "the message to %s in alice's INBOX" % form)
    # parameters after the bare <Postmaster> still work, junk is a syntax error
    with Raw(srv.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER").code == 250
        assert c.cmd("RCPT TO:<Postmaster>junk").code == 501


def test_postmaster_of_every_hosted_domain_reaches_a_person(srv, token):
    # other.test has one account (dave); a domain without accounts falls back to the server's
    # oldest account; an explicit alias wins over the automatic one
    postino("domain", "add", "noaccounts.test", "--data", srv.data)
    postino("domain", "add", "explicit.test", "--data", srv.data)
    postino("alias", "add", "postmaster@explicit.test", "bob@example.test", "--data", srv.data)
    cases = [("postmaster@other.test", "dave@other.test"),
             ("PostMaster@Other.Test", "dave@other.test"),
             ("postmaster@noaccounts.test", "alice@example.test"),
             ("postmaster@explicit.test", "bob@example.test"),
             ("postmaster@example.test", "alice@example.test")]
    for rcpt, who in cases:
        t = "%s-%s" % (token, rcpt.lower())
        rr, rd = send_raw(srv.smtp_port, "<%s>" % rcpt, t)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: srv.find_messages(who, t), 5, 0.05, "%s in %s" % (rcpt, who))
    # the explicit alias is the only target: alice does not get a copy
    t = "%s-%s" % (token, "postmaster@explicit.test")
    assert not srv.find_messages("alice@example.test", t)
    # other local parts of an account-less domain stay unknown
    rr, _ = send_raw(srv.smtp_port, "<nobody@noaccounts.test>", token)
    assert rr.code == 550, rr


# ---------------------------------------------------------------- IDN (RFC 6531, IDNA2008)

@pytest.fixture(scope="module")
def idn(srv):
    cp = postino("domain", "add", IDN_U, "--data", srv.data)
    assert IDN_A in cp.stdout, cp.stdout
    postino("user", "add", "x@" + IDN_U.upper(), "--data", srv.data, input=PW + "\n")
    postino("user", "add", "%s@%s" % (UTF8_LOCAL, IDN_U), "--data", srv.data, input=PW + "\n")
    postino("alias", "add", "info@" + IDN_U, "%s@%s" % (UTF8_LOCAL, IDN_A), "--data", srv.data)
    return srv


def test_idn_domain_is_stored_as_a_label(idn):
    out = postino("domain", "list", "--data", idn.data).stdout.split()
    assert IDN_A in out and IDN_U not in out, out
    users = postino("user", "list", IDN_U, "--data", idn.data).stdout
    assert "x@" + IDN_A in users, users
    assert ("%s@%s" % (UTF8_LOCAL, IDN_A)) in users, users
    # adding it again in the other form is the same domain
    cp = postino("domain", "add", IDN_A, "--data", idn.data)
    assert "already hosted" in cp.stdout, cp.stdout + cp.stderr


def test_rcpt_to_u_label_domain_is_delivered_on_25(idn, token):
    for rcpt in ("<x@%s>" % IDN_U, "<X@B\u00dcCHER.example>", "<x@%s>" % IDN_A):
        t = token + rcpt.encode("utf-8").hex()
        rr, rd = send_raw(idn.smtp_port, rcpt, t, utf8=True)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: files_with(idn, IDN_A, "x", t), 5, 0.05, "delivery to " + rcpt)


def test_utf8_local_part_receives_mail(idn, token):
    for rcpt in ("<%s@%s>" % (UTF8_LOCAL, IDN_U), "<%s@%s>" % (UTF8_LOCAL, IDN_A),
                 "<info@%s>" % IDN_U):
        t = token + rcpt.encode("utf-8").hex()
        rr, rd = send_raw(idn.smtp_port, rcpt, t, utf8=True)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: files_with(idn, IDN_A, UTF8_LOCAL_DIR, t), 5, 0.05,
                   "delivery to " + rcpt)
    # without SMTPUTF8 a UTF-8 address is refused, never mangled
    rr, _ = send_raw(idn.smtp_port, "<%s@%s>" % (UTF8_LOCAL, IDN_A), token)
    assert rr.code == 553, rr


def test_login_with_u_label_address(idn, token):
    ctx = idn.ssl_context()
    for user in ("x@" + IDN_U, "x@" + IDN_A, "%s@%s" % (UTF8_LOCAL, IDN_U)):
        with Raw(idn.submission_port) as c:
            c.ehlo()
            c.starttls(ctx)
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + auth_plain_arg(user, PW))
            assert r.code == 235, (user, r)


def test_pop3_and_imap_login_with_u_label_address(idn):
    ctx = idn.ssl_context()
    user = "x@" + IDN_U
    p = poplib.POP3_SSL("127.0.0.1", idn.ports["pop3s"], context=ctx)
    try:
        p.user(user)
        assert p.pass_(PW).startswith(b"+OK"), "POP3 login as %s" % user
    finally:
        p.quit()
    # IMAP: 8-bit text is allowed in a quoted string (RFC 9051), not in an atom
    with socket.create_connection(("127.0.0.1", idn.ports["imaps"]), 15) as sock:
        with ctx.wrap_socket(sock, server_hostname="mail.example.test") as t:
            t.settimeout(15)
            f = t.makefile("rb")
            assert f.readline().startswith(b"* OK")
            t.sendall(('a1 LOGIN "%s" "%s"\r\n' % (user, PW)).encode("utf-8"))
            line = f.readline()
            while line.startswith(b"*"):
                line = f.readline()
            assert line.startswith(b"a1 OK"), line


def test_user_add_refuses_malformed_utf8(idn):
    # bytes that are not UTF-8 cannot go through a str argv: pass bytes
    cp = subprocess.run([POSTINO_BIN.encode(), b"user", b"add", b"a\xffb@" + IDN_A.encode(),
                         b"--data", idn.data.encode()], input=(PW + "\n").encode(),
                        capture_output=True, timeout=30)
    assert cp.returncode != 0
    assert b"not a valid address" in cp.stderr, cp.stderr


# ---------------------------------------------------------------- early talkers (port 25)

_next_ip = [10]


def fresh_ip():
    """A loopback source address no earlier test used (the server remembers clients that
    passed the pregreet test)."""
    _next_ip[0] += 1
    return "127.0.%d.%d" % (os.getpid() % 200 + 1, _next_ip[0])


def connect_from(ip, port):
    return socket.create_connection(("127.0.0.1", port), 15, source_address=(ip, 0))


def read_all(sock, timeout=10):
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def test_early_talker_is_refused_and_its_mail_not_accepted(srv, token):
    ip = fresh_ip()
    with connect_from(ip, srv.smtp_port) as sock:
        # the whole transaction at once, before any greeting (what spam software does)
        sock.sendall(("EHLO bot.test\r\nMAIL FROM:<bot@remote.test>\r\n"
                      "RCPT TO:<alice@example.test>\r\nDATA\r\n").encode()
                     + message(token) + b".\r\nQUIT\r\n")
        data, closed = read_all(sock)
    lines = data.decode("utf-8", "replace").split("\r\n")
    assert closed, data
    assert lines[0].startswith("220-"), lines
    assert lines[1].startswith("220 "), lines
    assert lines[2].startswith("554 5.5.1 "), lines
    assert "before the greeting" in lines[2], lines
    assert [ln for ln in lines if ln] == lines[:3], lines   # nothing else: no 250 to anything
    # the server closed the session (above): a message it took would be stored by now
    assert not srv.grep_store(token), "mail of an early talker was stored"
    wait_until(lambda: b"event=early-talker" in srv.log_bytes(), 5, 0.02, "the early-talker log")


def test_client_that_waits_gets_the_whole_greeting_and_is_remembered(srv, token):
    ip = fresh_ip()
    with connect_from(ip, srv.smtp_port) as sock:
        f = sock.makefile("rb")
        t0 = time.monotonic()
        first = f.readline()
        t1 = time.monotonic()
        last = f.readline()
        t2 = time.monotonic()
        assert first.startswith(b"220-"), first
        assert last.startswith(b"220 "), last
        assert t2 - t0 >= 0.9, "the last greeting line came after %.2fs, before the pause" % (
            t2 - t0)
        assert t1 - t0 < t2 - t0
        sock.sendall(b"EHLO mta.test\r\n")
        line = f.readline()
        while line[3:4] == b"-":
            line = f.readline()
        assert line.startswith(b"250 "), line
        sock.sendall(b"MAIL FROM:<a@remote.test>\r\n")
        assert f.readline().startswith(b"250")
        sock.sendall(b"RCPT TO:<bob@example.test>\r\n")
        assert f.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert f.readline().startswith(b"354")
        sock.sendall(message(token, to="bob@example.test") + b".\r\n")
        assert f.readline().startswith(b"250")
    wait_until(lambda: srv.find_messages("bob@example.test", token), 5, 0.05, "delivery")
    # the same client again: greeted at once, in one line
    with connect_from(ip, srv.smtp_port) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")


def test_starttls_port_still_serves_tls_first_and_has_no_pause(srv):
    # 587 waits for a ClientHello before greeting (forgiving ports): a TLS-first client is
    # served as implicit TLS, a plaintext one gets a one-line greeting
    ctx = srv.ssl_context()
    with connect_from(fresh_ip(), srv.submission_port) as sock:
        with ctx.wrap_socket(sock, server_hostname="mail.example.test") as t:
            t.settimeout(10)
            assert t.recv(4) == b"220 "
    with connect_from(fresh_ip(), srv.submission_port) as sock:
        sock.settimeout(10)
        assert sock.recv(4) == b"220 "


# ---------------------------------------------------------------- directory-harvest brake

def test_unknown_recipients_are_slowed_then_the_session_closed(srv, token):
    with Raw(srv.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<harvester@remote.test>").code == 250
        took = []
        for i in range(1, 10):
            t0 = time.monotonic()
            r = c.cmd("RCPT TO:<nobody%d-%s@example.test>" % (i, token))
            took.append(time.monotonic() - t0)
            assert r.code == 550, (i, r)
            assert r.text.startswith("5.1.1"), r
        # from the 4th on each reply waited for the brake's delay (1 s by default)
        for i, t in enumerate(took[3:], start=4):
            assert t >= 0.9, "unknown recipient %d was answered after %.2fs" % (i, t)
        # a known recipient is still accepted while under the limit
        assert c.cmd("RCPT TO:<alice@example.test>").code == 250
        r = c.cmd("RCPT TO:<nobody10-%s@example.test>" % token)
        assert r.code == 421, r
        assert r.text.startswith("4.7.0"), r
        assert c.wait_closed(5)
    assert b"event=harvest-limit" in srv.log_bytes()


def test_pipelined_unknown_recipients_keep_their_order(srv):
    with Raw(srv.smtp_port) as c:
        c.ehlo()
        rcpts = ["<u%d@example.test>" % i for i in range(5)] + ["<carol@example.test>"]
        c.send("MAIL FROM:<p@remote.test>\r\n" + "".join("RCPT TO:%s\r\n" % r for r in rcpts)
               + "RSET\r\n")
        t0 = time.monotonic()
        codes = [c.reply().code for _ in range(len(rcpts) + 2)]
        assert codes == [250, 550, 550, 550, 550, 550, 250, 250], codes
        assert time.monotonic() - t0 >= 1.8   # two delayed replies


# ---------------------------------------------------------------- memory before login

MB = 1 << 20
HOSTILE = 30                  # sessions held open at once by each attack
PER_SESSION_BUDGET = 96 << 10  # what one pre-auth session may make the worker hold


def _sanitized():
    try:
        with open(POSTINO_BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def worker_rss(srv):
    """Summed VmRSS in octets of the serve process's children (the worker and the queue)."""
    total = 0
    for pid in srv.children():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def hostile_socket(srv, port):
    """A connection whose receive buffer is tiny, so replies it never reads stay with the
    server instead of in the kernel."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", port))
    return sock


def read_reply_line(f, code_prefix=b""):
    """The last line of one reply."""
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def open_transaction(srv):
    """A port 25 session inside DATA, before the end of the header section."""
    sock = hostile_socket(srv, srv.smtp_port)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    for cmd, want in ((b"EHLO hostile.test", b"250"), (b"MAIL FROM:<h@remote.test>", b"250"),
                      (b"RCPT TO:<alice@example.test>", b"250"), (b"DATA", b"354")):
        sock.sendall(cmd + b"\r\n")
        r = read_reply_line(f)
        assert r.startswith(want), (cmd, r)
    return sock, f


def attack_header_section(srv):
    # a header section that never ends: 250 KB of header lines, no blank line
    sock, f = open_transaction(srv)
    sock.sendall((b"X-Pad: " + b"a" * 90 + b"\r\n") * 2600)
    return sock


def attack_unread_replies(srv):
    # pipelined commands whose replies the client never reads
    sock = hostile_socket(srv, srv.smtp_port)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    sock.settimeout(3)
    try:
        sock.sendall(b"EHLO hostile.test\r\n" + b"NOOP\r\n" * 40000)
    except (socket.timeout, OSError):
        pass   # the server stopped reading: that is the point
    return sock


def attack_overlong_line(srv):
    sock = hostile_socket(srv, srv.smtp_port)
    sock.settimeout(3)
    try:
        sock.sendall(b"EHLO " + b"x" * (2 << 20))
    except (socket.timeout, OSError):
        pass
    return sock


def attack_bdat_before_mail(srv):
    sock = hostile_socket(srv, srv.smtp_port)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    sock.sendall(b"EHLO hostile.test\r\nBDAT 3000000 LAST\r\n")
    assert read_reply_line(f).startswith(b"250 ")
    sock.settimeout(3)
    try:
        sock.sendall(b"z" * 2000000)   # most of the chunk, then silence
    except (socket.timeout, OSError):
        pass
    return sock


def attack_auth_initial_response(srv):
    # before login on the submission port, after STARTTLS: a huge AUTH PLAIN initial response
    sock = socket.create_connection(("127.0.0.1", srv.submission_port), 15)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    sock.sendall(b"EHLO hostile.test\r\nSTARTTLS\r\n")
    read_reply_line(f)
    assert read_reply_line(f).startswith(b"220 ")
    t = srv.ssl_context().wrap_socket(sock, server_hostname="mail.example.test")
    t.settimeout(3)
    try:
        t.sendall(b"EHLO hostile.test\r\nAUTH PLAIN " + b"QUFB" * (400 << 10))
    except (socket.timeout, OSError, ssl.SSLError):
        pass
    return t


def attack_many_recipients(srv):
    sock = hostile_socket(srv, srv.smtp_port)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    sock.settimeout(3)
    try:
        sock.sendall(b"EHLO hostile.test\r\nMAIL FROM:<h@remote.test>\r\n"
                     + b"RCPT TO:<team@example.test>\r\n" * 20000)
    except (socket.timeout, OSError):
        pass
    return sock


ATTACKS = {
    "header-section": attack_header_section,
    "unread-replies": attack_unread_replies,
    "overlong-line": attack_overlong_line,
    "bdat-before-mail": attack_bdat_before_mail,
    "auth-initial-response": attack_auth_initial_response,
    "many-recipients": attack_many_recipients,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_pre_auth_client_cannot_make_the_worker_hold_memory(srv, attack):
    fn = ATTACKS[attack]
    fn(srv).close()            # warm up: caches and allocator arenas the attack touches
    # the baseline once the server has closed every session (this one, earlier tests' ones)
    wait_until(lambda: open_connections(srv.smtp_port) == 0, 10, 0.02,
               "the server to close the warm-up session")
    base = worker_rss(srv)
    socks = []
    try:
        for _ in range(HOSTILE):
            socks.append(fn(srv))
        # the observation window: what the worker takes in within it counts against the
        # budget (no event says "it read all it will", the memory itself is the measure)
        time.sleep(0.5)
        grown = worker_rss(srv) - base
        budget = HOSTILE * PER_SESSION_BUDGET + 2 * MB
        if not _sanitized():   # ASan keeps freed memory in quarantine: RSS says little there
            assert grown < budget, "%d %s sessions grew the worker by %.1f MB (budget %.1f)" % (
                HOSTILE, attack, grown / MB, budget / MB)
    finally:
        for s in socks:
            s.close()
    # the server is still serving
    with Raw(srv.smtp_port) as c:
        c.ehlo()


def test_pipelining_client_that_reads_late_is_served_in_full(srv):
    # 3 MB of pipelined NOOPs (7 MB of replies, more than the kernel buffers hold) while the
    # client reads nothing for two seconds: the server stops taking commands while its output
    # waits, instead of queueing replies until the session is dropped
    import threading
    n = 500000
    sock = socket.create_connection(("127.0.0.1", srv.smtp_port), 15)
    f = sock.makefile("rb")
    assert read_reply_line(f).startswith(b"220 ")
    sent = []

    def sender():
        try:
            sock.sendall(b"NOOP\r\n" * n + b"QUIT\r\n")
            sent.append(True)
        except OSError as e:
            sent.append(e)

    th = threading.Thread(target=sender)
    th.start()
    time.sleep(2)   # the subject: the client reads nothing for two seconds
    ok = 0
    sock.settimeout(30)
    while True:
        line = f.readline()
        if not line or line.startswith(b"221"):
            break
        assert line.startswith(b"250 "), (ok, line)
        ok += 1
    th.join(30)
    sock.close()
    assert ok == n, "%d of %d NOOPs answered" % (ok, n)
    assert sent == [True], sent


def test_quickstart_with_u_label_domain_and_mixed_case_account(tmp_path):
    data = str(tmp_path / "qs")
    cp = postino("quickstart", "mail.example.test", "--data", data, "--port-offset", "45000",
                 "--domain", IDN_U, "--account", "Demo@B\u00dcCHER.example")
    assert IDN_A in cp.stdout, cp.stdout
    assert os.path.isdir(os.path.join(data, "mail", IDN_A, "demo", "cur")), os.listdir(
        os.path.join(data, "mail"))
    assert "demo@" + IDN_A in postino("user", "list", "--data", data).stdout
