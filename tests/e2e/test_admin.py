"""Admin-side safety (issue 11): CLI listings never print a peer's control characters raw; as
root the workers run as a system user unless told otherwise, and loudly so; data files are not
for other users; config check catches what serve would trip on, and workers that cannot start
stop the master instead of a restart loop.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_admin.py
"""
import base64
import os
import pwd
import re
import signal
import socket
import subprocess
import time
import zlib

import pytest

from conftest import (HOST, POSTINO_BIN, finish_server, pick_port_offset, postino, start_server,
                      wait_until)
from smtphelp import SMTP

# a login name that would forge a whole line of `postino diag ip` output, and an ANSI escape
FORGED = "2026-01-01 00:00:00  logged in  IMAP (SSL) port 993 with TLS from 10.9.9.9"
EVIL = "evil\r\n  " + FORGED + "\x1b[2J\x07"


@pytest.fixture(scope="module")
def srv(workdir, pki):
    s = start_server(os.path.join(workdir, "admin"), pki)
    yield s
    finish_server(s)


def _ctx(srv):
    ctx = srv.ssl_context()
    ctx.check_hostname = False
    return ctx


def _imap_literal_login(srv, user):
    """LOGIN with the user name as a literal: CR/LF and ESC reach the server untouched."""
    raw = user.encode()
    with socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=15) as s0:
        with _ctx(srv).wrap_socket(s0) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"a1 LOGIN {%d}\r\n" % len(raw))
            assert f.readline().startswith(b"+"), "no continuation for the literal"
            s.sendall(raw + b" wrongpass\r\n")
            line = f.readline()
            assert line.startswith(b"a1 NO"), line


def _pop3_auth_plain(srv, user):
    blob = base64.b64encode(b"\0" + user.encode() + b"\0wrongpass")
    with socket.create_connection(("127.0.0.1", srv.ports["pop3s"]), timeout=15) as s0:
        with _ctx(srv).wrap_socket(s0) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"AUTH PLAIN " + blob + b"\r\n")
            line = f.readline()
            assert line.startswith(b"-ERR"), line


def _smtp_auth_plain(srv, user):
    c = SMTP(srv.submission_port)
    c.starttls(context=srv.ssl_context())
    c.ehlo("client.example")
    blob = base64.b64encode(b"\0" + user.encode() + b"\0wrongpass").decode()
    code, msg = c.docmd("AUTH", "PLAIN " + blob)
    assert code == 535, (code, msg)
    c.close()


def _assert_clean(out):
    bad = [c for c in out if (ord(c) < 0x20 and c != "\n") or ord(c) == 0x7f]
    assert not bad, "raw control characters in the listing: %r" % out
    for line in out.splitlines():
        assert not line.lstrip().startswith("2026-01-01"), "a forged line: %r" % out


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_login_name_with_control_chars_is_escaped_in_diag(srv, proto):
    user = EVIL.replace("evil", "evil-" + proto)
    {"imap": _imap_literal_login, "pop3": _pop3_auth_plain, "smtp": _smtp_auth_plain}[proto](
        srv, user)
    out = {}

    def seen():
        out["ip"] = postino("diag", "ip", "127.0.0.1", "--data", srv.data).stdout
        return "evil-" + proto in out["ip"]
    wait_until(seen, 10, 0.1, "the %s event in diag ip" % proto)
    _assert_clean(out["ip"])
    assert re.search(r"evil-%s\\x0d\\x0a" % proto, out["ip"]), out["ip"]
    # looked up by that (lower-cased) name, the account view is clean too
    ud = postino("user", "diag", user.lower(), "--data", srv.data).stdout
    assert "evil-" + proto in ud, ud
    _assert_clean(ud)


# ---------------------------------------------------------------- root defaults (item 3)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run_user defaults apply to root")


def _quickstart(d, *extra):
    return postino("quickstart", HOST, "--data", d, "--port-offset", str(pick_port_offset()),
                   *extra)


def _conf_value(d, key):
    with open(os.path.join(d, "postino.conf")) as f:
        m = re.search(r"^%s *= *(.*)$" % key, f.read(), re.M)
    return m.group(1).strip() if m else None


def _serve(d):
    log = open(os.path.join(d, "..", "serve-%d.log" % time.monotonic_ns()), "w+b")
    p = subprocess.Popen([POSTINO_BIN, "serve", "--data", d], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True)
    return p, log


def _log_text(log):
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


def _stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _children_uids(pid):
    uids = []
    for ent in os.listdir("/proc"):
        if not ent.isdigit():
            continue
        try:
            with open("/proc/%s/status" % ent) as f:
                st = f.read()
        except OSError:
            continue
        if re.search(r"^PPid:\s+%d$" % pid, st, re.M):
            uids.append(int(re.search(r"^Uid:\s+(\d+)", st, re.M).group(1)))
    return uids


@needs_root
def test_quickstart_as_root_runs_workers_as_system_user(tmp_path):
    """As root, quickstart without --user creates (if needed) and uses the system user postino:
    run_user is set, the data dir is its, the key stays root's; the workers are not root."""
    d = str(tmp_path / "data")
    out = _quickstart(d).stdout
    assert "workers run as:         postino" in out, out
    assert _conf_value(d, "run_user") == "postino"
    pw = pwd.getpwnam("postino")
    assert os.stat(d).st_uid == pw.pw_uid
    key = os.path.join(d, "certs", HOST + ".key")
    st = os.stat(key)
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0, oct(st.st_mode)
    cp = postino("config", "check", "--data", d)
    assert "WARNING" not in cp.stderr, cp.stderr
    p, log = _serve(d)
    try:
        # children are root for a moment after fork: wait for 2 workers + the queue as postino
        try:
            wait_until(lambda: len(_children_uids(p.pid)) >= 3 and
                       all(u == pw.pw_uid for u in _children_uids(p.pid)), 15, 0.1,
                       "workers and queue running as postino")
        except AssertionError:
            raise AssertionError("uids %r\n%s" % (_children_uids(p.pid), _log_text(log)))
    finally:
        _stop(p)


@needs_root
def test_workers_as_root_only_when_asked_and_then_loudly(tmp_path):
    d = str(tmp_path / "data")
    cp = _quickstart(d, "--user", "root")
    assert "WARNING" in cp.stderr and "root" in cp.stderr, cp.stderr
    assert _conf_value(d, "run_user") == ""
    cp = postino("config", "check", "--data", d)
    assert "WARNING: the workers would run as root" in cp.stderr, cp.stderr
    p, log = _serve(d)
    try:
        wait_until(lambda: "event=started" in _log_text(log), 15, 0.1, "serve to start")
        assert "event=running-as-root" in _log_text(log), _log_text(log)
    finally:
        _stop(p)


def _modes(srv, names):
    out = {}
    for dirpath, dirs, files in os.walk(srv.data):
        for n in files:
            if any(n == b or n.startswith(b + "-") for b in names):
                out[os.path.join(dirpath, n)] = os.stat(os.path.join(dirpath, n)).st_mode
    return out


def test_data_files_are_not_world_readable(srv):
    """diag.db, limits.db and every index.db (and their -wal/-shm) are 0600/0640 like the
    messages: nothing for other users, no group write."""
    user, pw = next(iter(srv.users.items()))
    _smtp_auth_plain(srv, "nobody-" + user)                     # diag.db
    c = SMTP(srv.submission_port)
    c.starttls(context=srv.ssl_context())
    c.login(user, pw)
    c.sendmail(user, [user], "Subject: modes\r\n\r\nhello\r\n")  # limits.db, index.db
    c.quit()
    wait_until(lambda: len(_modes(srv, ("diag.db", "limits.db", "index.db"))) >= 3, 10, 0.1,
               "the databases")
    modes = _modes(srv, ("diag.db", "limits.db", "index.db"))
    for base in ("diag.db", "limits.db", "index.db"):
        assert any(os.path.basename(p) == base for p in modes), (base, modes)
    bad = {p: oct(m & 0o777) for p, m in modes.items() if m & 0o037}
    assert not bad, bad


# ---------------------------------------------------------------- config check (item 12)

def test_config_check_two_listeners_on_one_port(tmp_path):
    d = str(tmp_path / "data")
    _quickstart(d)
    port = int(_conf_value(d, "imap_port"))
    with open(os.path.join(d, "postino.conf"), "a") as f:
        f.write("pop3_port = %d\n" % port)
    cp = postino("config", "check", "--data", d, check=False)
    assert cp.returncode == 1, cp.stdout
    assert "listeners imap and pop3 both use port %d" % port in cp.stderr, cp.stderr
    cp = subprocess.run([POSTINO_BIN, "serve", "--data", d], capture_output=True, text=True,
                        timeout=15)
    assert cp.returncode != 0 and "both use port" in cp.stderr, cp.stderr


def test_config_check_certificate_for_other_names(tmp_path, pki):
    d = str(tmp_path / "data")
    _quickstart(d)
    with open(os.path.join(d, "postino.conf"), "a") as f:
        f.write("tls_cert = %s\ntls_key = %s\n" % (pki["other_cert"], pki["other_key"]))
    cp = postino("config", "check", "--data", d, check=False)
    assert cp.returncode == 1, cp.stdout
    assert "covers none of the names clients are told to use" in cp.stderr, cp.stderr
    assert HOST in cp.stderr and "autoconfig.example.test" in cp.stderr, cp.stderr
    # the right certificate passes; the setup names it lacks are a warning only
    with open(os.path.join(d, "postino.conf"), "a") as f:
        f.write("tls_cert = %s\ntls_key = %s\n" % (pki["main_cert"], pki["main_key"]))
    cp = postino("config", "check", "--data", d)
    assert "warning: no certificate covers autoconfig.example.test" in cp.stderr, cp.stderr


@needs_root
def test_run_user_that_cannot_reach_data_dir(tmp_path):
    """config check names the problem; serve stops with one clear error instead of restarting
    workers every second with its ports open and no greeting."""
    d = str(tmp_path / "data")
    _quickstart(d)
    os.chown(d, 0, 0)
    os.chmod(d, 0o700)
    cp = postino("config", "check", "--data", d, check=False)
    assert cp.returncode == 1, cp.stdout
    assert "run_user postino cannot enter %s" % d in cp.stderr, cp.stderr
    port = int(_conf_value(d, "smtp_port"))
    p, log = _serve(d)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        pass
    text = _log_text(log)
    _stop(p)
    assert p.returncode == 1, text   # on its own (after _stop's SIGTERM it would be 0)
    assert "event=startup-failed" in text and "cannot enter" in text, text
    assert text.count("event=worker-died") == 0, text
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_workers_that_cannot_start_stop_the_master(tmp_path):
    """A worker failing at startup (here: system.db is not an account database) makes the
    master stop with one error and a non-zero status, ports closed; not a restart loop."""
    d = str(tmp_path / "data")
    _quickstart(d)
    db = os.path.join(d, "system.db")
    st = os.stat(db)
    os.unlink(db)
    with open(db, "wb") as f:
        f.write(b"this is not a database" * 100)
    os.chown(db, st.st_uid, st.st_gid)
    port = int(_conf_value(d, "smtp_port"))
    p, log = _serve(d)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        pass
    text = _log_text(log)
    _stop(p)
    assert p.returncode == 1, text   # on its own (after _stop's SIGTERM it would be 0)
    assert text.count("the workers cannot start") == 1, text
    # the third failed start in a row stops the master; the two before it are logged and
    # restarted, workers or the queue, whichever the master reaped first
    assert text.count("event=worker-died") + text.count("event=queue-died") == 2, text
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_queue_listing_escapes_control_chars(tmp_path):
    """queue list / show print envelope text (addresses, a remote server's last reply) with
    control characters escaped (item 4)."""
    d = str(tmp_path / "data")
    _quickstart(d)
    qdir = os.path.join(d, "queue")
    qid = "00000000deadbeef"
    body = b"Return-Path: <x@x.test>\r\n\r\nhi\r\n"
    with open(os.path.join(qdir, qid + ".msg"), "wb") as f:
        f.write(body)
    env = ("version 1\nid %s\narrived %d\nfrom <ev\x1b[2Jil@x.test>\nbody 7BIT\nsmtputf8 0\n"
           "ret -\nenvid -\nauth -\nsize %d\ncrc32 %08x\n"
           "rcpt <r\x1b]0;title\x07@y.test> notify=- orcpt=- err=451 \x1b[31mred\r\n"
           % (qid, int(time.time()), len(body), zlib.crc32(body)))
    with open(os.path.join(qdir, qid + ".env"), "w") as f:
        f.write(env)
    st = os.stat(qdir)
    for n in (qid + ".msg", qid + ".env"):
        os.chown(os.path.join(qdir, n), st.st_uid, st.st_gid)
    out = postino("queue", "list", "--data", d).stdout
    assert qid in out and "ev\\x1b[2Jil@x.test" in out, out
    _assert_clean(out)
    show = postino("queue", "show", qid, "--data", d).stdout
    assert "\\x1b[31mred" in show, show
    _assert_clean(show)


def test_config_check_warns_about_a_world_readable_key(tmp_path):
    d = str(tmp_path / "data")
    _quickstart(d)
    key = os.path.join(d, "certs", HOST + ".key")
    assert "readable by every user" not in postino("config", "check", "--data", d).stderr
    os.chmod(key, 0o644)
    cp = postino("config", "check", "--data", d)
    assert "the private key %s is readable by every user" % key in cp.stderr, cp.stderr


@needs_root
def test_quickstart_again_keeps_the_configured_run_user(tmp_path):
    """A second quickstart keeps the existing configuration, so it does not hand the data
    directory to the default system user behind run_user's back; it says what to change."""
    d = str(tmp_path / "data")
    _quickstart(d, "--user", "root")
    cp = _quickstart(d)
    assert "run_user is not set: set run_user = postino" in cp.stderr, cp.stderr
    assert os.stat(d).st_uid == 0
    assert _conf_value(d, "run_user") == ""


# ---------------------------------------------------------------- the accounts stay root's (item 3)

def _db_state(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def _as_postino_sql(db, sql):
    """Run sql on db with sqlite3 as the workers' user: what a compromised worker could do."""
    return subprocess.run(["runuser", "-u", "postino", "--", "sqlite3", db, sql],
                          capture_output=True, text=True, timeout=30)


def _submissions_login(d, user, password):
    import smtplib
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    port = int(_conf_value(d, "submissions_port"))
    c = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30)
    try:
        return c.login(user, password)[0]
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code
    finally:
        c.close()


@needs_root
def test_accounts_stay_roots_and_the_workers_only_read_them(tmp_path):
    """system.db belongs to root, the workers' group may only read it (0640), with no WAL files
    the group could write: the workers' user cannot change a password, yet logins work and the
    admin's changes (as root, while serving) keep it so and are seen at once."""
    d = str(tmp_path / "data")
    _quickstart(d)
    db = os.path.join(d, "system.db")
    gid = pwd.getpwnam("postino").pw_gid
    assert _db_state(db) == (0, gid, 0o640), _db_state(db)
    assert not os.path.exists(db + "-wal") and not os.path.exists(db + "-shm")
    r = _as_postino_sql(db, "UPDATE users SET hash = 'x'")
    assert r.returncode != 0, "the workers' user could write system.db"
    r = _as_postino_sql(db, "SELECT count(*) FROM domains")
    assert r.returncode == 0 and r.stdout.strip() == "1", (r.stdout, r.stderr)
    postino("user", "add", "bob@example.test", "--data", d, input="Bob-pw-123456\n")
    assert _db_state(db) == (0, gid, 0o640), _db_state(db)
    p, log = _serve(d)
    try:
        wait_until(lambda: "event=started" in _log_text(log), 15, 0.1, "serve to start")
        wait_until(lambda: _submissions_login(d, "bob@example.test", "Bob-pw-123456") == 235,
                   15, 0.2, "bob's login")
        # the admin changes the password while the workers hold the database open
        postino("user", "passwd", "bob@example.test", "--data", d, input="Bob-pw-7654321\n")
        assert _submissions_login(d, "bob@example.test", "Bob-pw-7654321") == 235
        assert _submissions_login(d, "bob@example.test", "Bob-pw-123456") == 535
        assert _db_state(db) == (0, gid, 0o640), _db_state(db)
        assert "z error postino" not in _log_text(log), _log_text(log)
    finally:
        _stop(p)


@needs_root
def test_serve_takes_back_an_old_system_db(tmp_path):
    """A system.db left by an older postino (owned by the workers' user, WAL mode) is made
    root's, 0640, rollback journal, when serve starts as root; the accounts keep working."""
    d = str(tmp_path / "data")
    _quickstart(d)
    postino("user", "add", "carol@example.test", "--data", d, input="Carol-pw-123456\n")
    db = os.path.join(d, "system.db")
    pw = pwd.getpwnam("postino")
    subprocess.run(["sqlite3", db, "PRAGMA journal_mode=WAL"], check=True, capture_output=True)
    os.chown(db, pw.pw_uid, pw.pw_gid)
    os.chmod(db, 0o660)
    p, log = _serve(d)
    try:
        wait_until(lambda: "event=started" in _log_text(log), 15, 0.1, "serve to start")
        assert "event=system-db-secured" in _log_text(log), _log_text(log)
        assert _db_state(db) == (0, pw.pw_gid, 0o640), _db_state(db)
        r = subprocess.run(["sqlite3", db, "PRAGMA journal_mode"], capture_output=True,
                           text=True, check=True)
        assert r.stdout.strip() == "delete", r.stdout
        wait_until(lambda: _submissions_login(d, "carol@example.test", "Carol-pw-123456") == 235,
                   15, 0.2, "carol's login")
        assert _as_postino_sql(db, "DELETE FROM users").returncode != 0
    finally:
        _stop(p)


@needs_root
def test_quickstart_gives_the_tree_without_a_shell_or_following_links(tmp_path):
    """The data directory goes to the workers' user entry by entry (no shell: a quote in the
    path is fine), and a symbolic link inside it is not followed (its target stays root's)."""
    d = str(tmp_path / "it's data")
    _quickstart(d)
    pw = pwd.getpwnam("postino")
    assert os.stat(d).st_uid == pw.pw_uid
    assert os.stat(os.path.join(d, "mail")).st_uid == pw.pw_uid
    outside = str(tmp_path / "outside.txt")
    with open(outside, "w") as f:
        f.write("root's\n")
    os.symlink(outside, os.path.join(d, "link"))
    _quickstart(d)
    assert os.stat(outside).st_uid == 0, "quickstart followed a link out of the data directory"
    assert os.lstat(os.path.join(d, "link")).st_uid == pw.pw_uid
