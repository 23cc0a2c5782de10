"""POP3 on 110 (STLS) and 995 against a real postino, with poplib, raw sockets, fetchmail and
getmail6 (issue 4)."""
import base64
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from postino_server import Server

USER = "alice@example.test"
OTHER = "bob@example.test"


@pytest.fixture(scope="module")
def srv():
    s = Server(users=(USER, OTHER, "carol@example.test", "dave@example.test"))
    yield s
    s.stop()


def msg(n, extra=""):
    return ("From: sender@remote.test\r\nTo: %s\r\nSubject: message %d\r\n\r\n"
            "Body of message %d\r\n.leading dot line\r\n%s" % (USER, n, n, extra))


def pop3s(srv, user=USER):
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    p.user(user)
    p.pass_(srv.password)
    return p


def pop3s_once_free(srv, user=USER, timeout=10):
    """pop3s() as soon as the server has let go of the maildrop lock of a session it saw
    drop: until then a login is refused with [IN-USE]."""
    end = time.monotonic() + timeout
    while True:
        try:
            return pop3s(srv, user)
        except poplib.error_proto as e:
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > end:
                raise
        time.sleep(0.05)


def raw_lines(sock, until):
    data = b""
    while not data.endswith(until):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_capa_and_plaintext_refused(srv):
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    assert "RESP-CODES" in caps and "AUTH-RESP-CODE" in caps and "PIPELINING" in caps
    for cmd in ("USER " + USER, "PASS x", "AUTH PLAIN"):
        with pytest.raises(poplib.error_proto) as e:
            p._shortcmd(cmd)
        assert e.value.args[0].startswith(b"-ERR [AUTH]")
        assert b"encryption" in e.value.args[0]
    p.stls(srv.ctx())
    caps = p.capa()
    assert "USER" in caps and caps.get("SASL") == ["PLAIN", "LOGIN"] and "STLS" not in caps
    p.user(USER)
    assert p.pass_(srv.password).startswith(b"+OK")
    p.quit()


def test_commands_pipelined_behind_stls_are_discarded(srv):
    s = socket.create_connection(("127.0.0.1", srv.port("pop3")), 10)
    s.recv(1000)
    s.sendall(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
    assert s.recv(1000).startswith(b"+OK")
    t = srv.ctx().wrap_socket(s, server_hostname="mail.example.test")
    t.sendall(b"PASS " + srv.password.encode() + b"\r\n")
    assert t.recv(1000).startswith(b"-ERR")   # USER was never executed
    t.close()


def test_wrong_password_has_auth_code(srv):
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    p.user(USER)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert e.value.args[0].startswith(b"-ERR [AUTH] ")
    assert b"password" in e.value.args[0]
    p.quit()


def test_sasl_plain_and_login(srv):
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + srv.password.encode()).decode()
    assert p._shortcmd("AUTH PLAIN " + ir).startswith(b"+OK")
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    assert p._shortcmd("AUTH LOGIN").startswith(b"+ ")
    assert p._shortcmd(base64.b64encode(USER.upper().encode()).decode()).startswith(b"+ ")
    assert p._shortcmd(base64.b64encode(srv.password.encode()).decode()).startswith(b"+OK")
    p.quit()


def test_transaction_commands(srv):
    for i in range(3):
        srv.deliver(USER, msg(i))
    p = pop3s(srv)
    count, total = p.stat()
    assert count >= 3
    resp, listing, _ = p.list()
    sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
    assert sum(sizes.values()) == total
    resp, uidls, _ = p.uidl()
    uidl = {int(a): b.decode() for a, b in (l.split() for l in uidls)}
    # UIDL agrees with the IMAP UID and UIDVALIDITY of INBOX
    db = srv.index(USER)
    uv = db.execute("select uidvalidity from mailboxes where name='INBOX'").fetchone()[0]
    uids = [r[0] for r in db.execute("select uid from messages m join mailboxes b on "
                                     "m.mailbox_id=b.id where b.name='INBOX' order by uid")]
    assert [uidl[i + 1] for i in range(count)] == ["%08x%08x" % (u, uv) for u in uids]
    r = p.retr(1)
    assert b"Subject: message 0" in b"\r\n".join(r[1])
    top = p.top(1, 0)[1]
    assert top[-1] == b"" and not any(l.startswith(b"Body") for l in top)
    top1 = p.top(1, 1)[1]
    assert top1[-1].startswith(b"Body of message 0")
    assert p.noop().startswith(b"+OK")
    assert p.list(2).startswith(b"+OK 2 ")
    assert p.uidl(2).split()[2].decode() == uidl[2]
    p.quit()


def test_list_size_is_retr_octets_without_stuffing(srv):
    srv.deliver(USER, msg(9, ".\r\n..two dots\r\nbare\nlf\r\n"))
    s = socket.create_connection(("127.0.0.1", srv.port("pop3s")), 10)
    t = srv.ctx().wrap_socket(s, server_hostname="mail.example.test")
    t.recv(1000)
    t.sendall(("USER %s\r\nPASS %s\r\n" % (USER, srv.password)).encode())
    raw_lines(t, b"octets)\r\n")
    t.sendall(b"STAT\r\n")
    n = int(raw_lines(t, b"\r\n").split()[1])
    for i in range(1, n + 1):
        t.sendall(b"LIST %d\r\n" % i)
        size = int(raw_lines(t, b"\r\n").split()[2])
        t.sendall(b"RETR %d\r\n" % i)
        data = raw_lines(t, b"\r\n.\r\n")
        body = data[data.index(b"\r\n") + 2:-3]
        unstuffed = b"".join(l[1:] if l.startswith(b".") else l
                             for l in body.splitlines(keepends=True))
        assert len(unstuffed) == size   # the message's own size, not the stuffed octets
        assert b"\n" not in body.replace(b"\r\n", b"")   # CRLF everywhere
    t.sendall(b"QUIT\r\n")
    t.close()


def test_dele_rset_quit_and_dropped_connection(srv):
    for i in range(2):
        srv.deliver(OTHER, msg(i))
    p = pop3s(srv, OTHER)
    n, _ = p.stat()
    assert p.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto) as e:
        p.dele(1)
    assert b"already deleted" in e.value.args[0]
    assert p.stat()[0] == n - 1
    assert p.rset().startswith(b"+OK")
    assert p.stat()[0] == n
    p.dele(1)
    p.sock.shutdown(socket.SHUT_RDWR)   # dropped: nothing is deleted
    p.sock.close()
    p = pop3s_once_free(srv, OTHER)
    assert p.stat()[0] == n
    first_uidl = p.uidl(1)
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    p = pop3s(srv, OTHER)
    assert p.stat()[0] == n - 1
    assert first_uidl.split()[2] not in [l.split()[1] for l in p.uidl()[1]]
    p.quit()
    db = srv.index(OTHER)
    assert db.execute("select count(*) from messages").fetchone()[0] == n - 1


def test_second_session_in_use(srv):
    p = pop3s(srv)
    q = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    q.user(USER)
    with pytest.raises(poplib.error_proto) as e:
        q.pass_(srv.password)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]")
    p.quit()
    q.user(USER)
    assert q.pass_(srv.password).startswith(b"+OK")
    q.quit()


@pytest.mark.parametrize("cmd", ["RETR 0", "RETR -1", "RETR 4294967296", "TOP 1 -1", "RETR x",
                                 "DELE 999999", "X" * 300, "USER " + "u" * 1000000, "LIST 1 2 3"])
def test_bad_input_leaves_mailbox_unchanged(srv, cmd):
    srv.deliver(USER, msg(77))
    p = pop3s(srv)
    before = p.stat()
    with pytest.raises(poplib.error_proto) as e:
        p._shortcmd(cmd)
    assert e.value.args[0].startswith(b"-ERR")
    assert p.stat() == before
    p.quit()
    p = pop3s(srv)
    assert p.stat() == before
    p.quit()


def test_uidl_stable_across_restart(srv):
    p = pop3s(srv)
    before = p.uidl()[1]
    p.quit()
    srv.stop_keep = True
    os_pid = srv.proc.pid
    import signal
    os.killpg(os_pid, signal.SIGTERM)
    srv.proc.wait(10)
    srv.wait_group_gone()
    import subprocess as sp
    from postino_server import BIN
    srv.proc = sp.Popen([BIN, "serve", "--data", srv.data], stdout=srv.log, stderr=sp.STDOUT,
                        start_new_session=True)
    srv.wait_ready()
    p = pop3s(srv)
    assert p.uidl()[1] == before
    p.quit()


def _fetchmail(srv, user, home, keep):
    rc = os.path.join(home, ".fetchmailrc")
    with open(rc, "w") as f:
        f.write('poll mail.example.test via 127.0.0.1 service %d protocol pop3 uidl user "%s" password "%s" ssl '
                'sslcertck sslcommonname mail.example.test sslcertfile "%s" sslproto TLS1.2+ %s mda "/bin/sh -c \'cat > %s/msg.$$$$.$$RANDOM\'"\n'
                % (srv.port("pop3s"), user, srv.password, srv.ca, "keep" if keep else "",
                   home + "/out"))
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
    return subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--sslcertfile", srv.ca],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_downloads_once_with_keep(srv, tmp_path):
    user = "carol@example.test"
    bodies = [msg(i) for i in range(5)]
    for b in bodies:
        srv.deliver(user, b)
    home = str(tmp_path)
    os.makedirs(home + "/out")
    r = _fetchmail(srv, user, home, keep=True)
    assert r.returncode == 0, r.stdout + r.stderr
    got = sorted(os.listdir(home + "/out"))
    assert len(got) == 5
    texts = [open(os.path.join(home, "out", g), "rb").read() for g in got]
    for b in bodies:   # byte for byte (fetchmail hands over LF line ends)
        assert any(b.replace("\r\n", "\n").encode() in t for t in texts)
    r = _fetchmail(srv, user, home, keep=True)
    assert r.returncode == 1, r.stdout + r.stderr   # 1 = no new mail
    assert len(os.listdir(home + "/out")) == 5


@pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 not installed")
def test_getmail_downloads_once_with_keep(srv, tmp_path):
    user = "dave@example.test"
    bodies = [msg(i) for i in range(4)]
    for b in bodies:
        srv.deliver(user, b)
    import pathlib
    import tempfile
    md = pathlib.Path(tempfile.mkdtemp(prefix="postino-getmail-")) / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    runas = ""
    if os.geteuid() == 0:   # getmail refuses to deliver as root: hand the Maildir to nobody
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chmod(md.parent, 0o755)
        for d in (md, md / "cur", md / "new", md / "tmp"):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        runas = "user = nobody\n"
    cfg = tmp_path / "getmailrc"
    cfg.write_text("[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = %d\n"
                   "username = %s\npassword = %s\nca_certs = %s\n\n[destination]\n"
                   "type = Maildir\npath = %s/\n%s\n[options]\nread_all = false\ndelete = false\n"
                   % (srv.port("pop3s"), user, srv.password, srv.ca, md, runas))
    cmd = ["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(cfg)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    files = os.listdir(md / "new")
    assert len(files) == 4
    texts = [open(md / "new" / f, "rb").read() for f in files]
    for b in bodies:
        assert any(b.replace("\r\n", "\n").encode() in t or b.encode() in t for t in texts)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(os.listdir(md / "new")) == 4
    shutil.rmtree(md.parent, ignore_errors=True)


def test_large_message_streams(srv):
    """A message far bigger than the output buffer's high-water mark arrives whole (RETR and
    TOP stream from the file and resume when the socket drains)."""
    user = "erin@example.test"
    srv.add_user(user)
    body = "Subject: big\r\n\r\n" + ("y" * 998 + "\r\n") * 3000
    srv.deliver(user, body)
    p = pop3s(srv, user)
    n, size = p.stat()
    resp, lines, octets = p.retr(1)
    assert octets == size and len(lines) > 3000
    assert b"\r\n".join(lines).endswith(b"y" * 998)
    p.quit()


def test_expire_zero_and_login_delay():
    s2 = Server(extra_conf="pop3_expire = 0\npop3_login_delay = 2", users=(USER,))
    try:
        s2.deliver(USER, msg(1))
        s2.deliver(USER, msg(2))
        p = pop3s(s2)
        caps = p.capa()
        assert caps.get("EXPIRE") == ["0"] and caps.get("LOGIN-DELAY") == ["2"]
        assert p.stat()[0] == 2
        p.retr(1)
        p.quit()
        q = poplib.POP3_SSL("127.0.0.1", s2.port("pop3s"), context=s2.ctx(), timeout=10)
        q.user(USER)
        with pytest.raises(poplib.error_proto) as e:
            q.pass_(s2.password)
        assert e.value.args[0].startswith(b"-ERR [LOGIN-DELAY]")
        deadline = time.time() + 10
        while True:
            q = poplib.POP3_SSL("127.0.0.1", s2.port("pop3s"), context=s2.ctx(), timeout=10)
            q.user(USER)
            try:
                q.pass_(s2.password)
                break
            except poplib.error_proto:
                assert time.time() < deadline
                time.sleep(0.2)   # the subject: LOGIN-DELAY is a timer the client waits out
        assert q.stat()[0] == 1   # the downloaded message was not kept
        q.quit()
    finally:
        s2.stop()


def test_expire_days_removes_old_downloaded_mail():
    s2 = Server(extra_conf="pop3_expire = 3", users=(USER,))
    try:
        s2.deliver(USER, msg(1))
        s2.deliver(USER, msg(2))
        p = pop3s(s2)
        assert p.capa().get("EXPIRE") == ["3"]
        p.retr(1)
        p.quit()
        db = s2.index(USER)
        seen = db.execute("select uid, flags & 1 from messages order by uid").fetchall()
        assert [f for _, f in seen] == [1, 0]   # downloaded -> \Seen
        db.execute("update messages set savedate = savedate - 4*86400")
        db.commit()
        db.close()
        p = pop3s(s2)
        assert p.stat()[0] == 1   # downloaded 4 days ago: expired; the other stays
        p.quit()
    finally:
        s2.stop()
