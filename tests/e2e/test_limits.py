"""Per-account sending limits on the submission ports (issue 5): hourly burst, recipients per
day, new recipients per day, counters shared by all workers and kept across restarts, automatic
suspension at the hard threshold (550 to the user, a message to the postmaster, a log line) and
`postino user unsuspend`.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_limits.py
"""
import datetime
import os
import re
import smtplib
import subprocess

import pytest

from conftest import USERS, postino, start_server, finish_server, wait_until
from smtphelp import SMTP, message

# server-wide limits are generous; each test gives its account tight limits of its own
CONF = ("workers = 3\nmax_conn_per_ip = 50\nsend_messages_per_hour = 1000\n"
        "send_suspend_threshold = 0\n")


@pytest.fixture(scope="module")
def srv(workdir, pki):
    s = start_server(os.path.join(workdir, "limits"), pki, extra_conf=CONF)
    postino("user", "add", "postmaster@example.test", "--data", s.data, input="pm-Secret-9\n")
    yield s
    finish_server(s)


def login(srv, user):
    c = SMTP(srv.submission_port)
    c.starttls(context=srv.ssl_context())
    c.ehlo()
    c.login(user, USERS[user])
    return c


def send(c, user, rcpts, token="t"):
    """One transaction; returns (mail reply, [rcpt replies], data reply or None)."""
    mail = c.mail(user)
    if mail[0] != 250:
        c.rset()
        return mail, [], None
    rr = [c.rcpt(r) for r in rcpts]
    if not any(code == 250 for code, _ in rr):
        c.rset()
        return mail, rr, None
    data = c.data(message(token, from_=user, to=rcpts[0]))
    return mail, rr, data


def limits(srv, user, *kv):
    return postino("user", "limits", user, *kv, "--data", srv.data)


def check_reset_time(text, minutes):
    """The reply names a reset time about `minutes` from now."""
    m = re.search(r"try again after (\d{4}-\d\d-\d\d )?(\d\d):(\d\d) UTC", text)
    assert m, text
    now = datetime.datetime.now(datetime.timezone.utc)
    want = now + datetime.timedelta(minutes=minutes)
    day = (datetime.date.fromisoformat(m.group(1).strip()) if m.group(1) else now.date())
    got = datetime.datetime(day.year, day.month, day.day, int(m.group(2)), int(m.group(3)),
                            tzinfo=datetime.timezone.utc)
    assert abs((got - want).total_seconds()) <= 120, (text, want)


def test_hourly_burst_gets_451_with_reason_and_survives_restart(srv):
    user = "bob@example.test"
    limits(srv, user, "messages_per_hour=3")
    c = login(srv, user)
    for i in range(3):
        mail, rr, data = send(c, user, ["alice@example.test"], "burst%d" % i)
        assert mail[0] == 250 and data[0] == 250, (mail, rr, data)
    mail, _, _ = send(c, user, ["alice@example.test"])
    text = mail[1].decode()
    assert mail[0] == 451 and text.startswith("4.7.1"), mail
    assert "3 messages per hour" in text
    check_reset_time(text, 60)
    c.quit()
    # the count is on disk: a restarted server still refuses
    srv.stop()
    srv.start()
    c = login(srv, user)
    mail, _, _ = send(c, user, ["alice@example.test"])
    assert mail[0] == 451 and b"messages per hour" in mail[1], mail
    c.quit()
    out = postino("user", "show", user, "--data", srv.data).stdout
    assert re.search(r"messages per hour\s+3 / 3\s+\(own", out), out
    # raising the limit lets the account send again at once
    limits(srv, user, "messages_per_hour=default")
    c = login(srv, user)
    mail, rr, data = send(c, user, ["alice@example.test"])
    assert data is not None and data[0] == 250, (mail, rr, data)
    c.quit()


def test_recipients_per_day(srv):
    user = "r1@example.test"
    limits(srv, user, "recipients_per_day=4")
    c = login(srv, user)
    mail, rr, data = send(c, user, ["alice@example.test", "bob@example.test", "x@remote.test"])
    assert [r[0] for r in rr] == [250, 250, 250] and data[0] == 250
    mail, rr, data = send(c, user, ["carol@example.test", "y@remote.test"])
    assert rr[0][0] == 250, rr
    assert rr[1][0] == 451 and rr[1][1].startswith(b"4.7.1"), rr
    assert b"4 recipients per day" in rr[1][1] and b"try again after" in rr[1][1]
    check_reset_time(rr[1][1].decode(), 24 * 60)
    assert data[0] == 250   # the accepted recipient still gets the message
    mail, rr, data = send(c, user, ["alice@example.test"])
    assert rr[0][0] == 451, rr
    c.quit()


def test_new_recipients_per_day(srv):
    user = "r2@example.test"
    limits(srv, user, "new_recipients_per_day=2")
    c = login(srv, user)
    _, rr, data = send(c, user, ["n1@remote.test", "n2@remote.test"])
    assert [r[0] for r in rr] == [250, 250] and data[0] == 250
    # written to before: not new, so not limited
    _, rr, data = send(c, user, ["N1@remote.test"])
    assert rr[0][0] == 250 and data[0] == 250, rr
    _, rr, _ = send(c, user, ["n3@remote.test"])
    assert rr[0][0] == 451 and rr[0][1].startswith(b"4.7.1"), rr
    assert b"2 new recipients" in rr[0][1], rr
    c.quit()
    out = postino("user", "limits", user, "--data", srv.data).stdout
    assert re.search(r"new recipients per day\s+2 / 2", out), out
    assert re.search(r"known recipients\s+2", out), out


def _owner_pids(srv, ports_local):
    """pids of the postino processes holding the server side of our connections."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                         text=True).stdout
    pids = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        peer = parts[3]
        if peer.rsplit(":", 1)[-1] in ports_local and "pid=" in line:
            pids.add(re.search(r"pid=(\d+)", line).group(1))
    return pids


def test_counters_shared_across_workers(srv):
    user = "carol@example.test"
    limits(srv, user, "messages_per_hour=10")
    conns = [login(srv, user) for _ in range(24)]
    local_ports = {str(c.sock.getsockname()[1]) for c in conns}
    pids = _owner_pids(srv, local_ports)
    assert len(pids) >= 2, "connections were not spread over several workers: %s" % pids
    codes = []
    for i, c in enumerate(conns):
        mail, rr, data = send(c, user, ["alice@example.test"], "shared%d" % i)
        codes.append(data[0] if data else mail[0])
    for c in conns:
        c.quit()
    assert codes.count(250) == 10, codes
    assert codes.count(451) == 14, codes


def test_suspend_at_threshold_and_unsuspend(srv):
    user = "r3@example.test"
    limits(srv, user, "messages_per_hour=1", "suspend_threshold=3")
    c = login(srv, user)
    _, _, data = send(c, user, ["alice@example.test"])
    assert data[0] == 250
    for _ in range(3):
        mail, _, _ = send(c, user, ["alice@example.test"])
        assert mail[0] == 451, mail

    def suspended():
        m, _, _ = send(c, user, ["alice@example.test"])
        return m if m[0] == 550 else None
    mail = wait_until(suspended, 10, 0.2, "the account to be suspended")
    assert mail[1].startswith(b"5.7.1") and b"suspended" in mail[1], mail
    assert b"contact your provider's support" in mail[1]
    c.quit()
    # a new session is refused too, whatever the limit says
    limits(srv, user, "messages_per_hour=0")
    c = login(srv, user)
    mail, _, _ = send(c, user, ["alice@example.test"])
    assert mail[0] == 550, mail
    c.quit()
    # the admin is told: a log line and a message to the postmaster
    wait_until(lambda: b"event=send-suspended user=r3@example.test" in srv.log_bytes(), 10, 0.1,
               "the suspension log line")

    def notice():
        for f in srv.maildir_files("postmaster@example.test"):
            data = open(f, "rb").read()
            if b"Subject: Sending suspended for r3@example.test" in data:
                return data
        return None
    data = wait_until(notice, 10, 0.1, "the postmaster notice")
    assert b"postino user unsuspend r3@example.test" in data
    out = postino("user", "show", user, "--data", srv.data).stdout
    assert "suspended:   yes" in out, out
    # its queued mail is held (the queue process skips a sender with a hold file)
    holds = os.path.join(srv.data, "queue", "hold-sender")

    def held():
        return os.path.isdir(holds) and any("r3" in n for n in os.listdir(holds))
    wait_until(held, 10, 0.1, "the hold on the sender's queued mail")
    diag = postino("user", "diag", user, "--data", srv.data).stdout
    assert "sending suspended" in diag and "user unsuspend" in diag, diag
    # unsuspend restores sending
    r = postino("user", "unsuspend", user, "--data", srv.data)
    assert "may send mail again" in r.stdout
    assert "suspended:   no" in postino("user", "show", user, "--data", srv.data).stdout
    assert not held(), os.listdir(holds)
    c = login(srv, user)
    mail, rr, data = send(c, user, ["alice@example.test"])
    assert data is not None and data[0] == 250, (mail, rr, data)
    c.quit()


def test_limits_cli_refuses_bad_input(srv):
    r = postino("user", "limits", "alice@example.test", "bogus=1", "--data", srv.data,
                check=False)
    assert r.returncode == 2 and "messages_per_hour" in r.stderr
    r = postino("user", "limits", "alice@example.test", "messages_per_day=lots", "--data",
                srv.data, check=False)
    assert r.returncode == 2 and "number" in r.stderr
    r = postino("user", "limits", "nobody@example.test", "--data", srv.data, check=False)
    assert r.returncode == 1 and "no account" in r.stderr
    r = postino("user", "unsuspend", "nobody@example.test", "--data", srv.data, check=False)
    assert r.returncode == 1


def test_limits_db_of_an_older_postino_keeps_its_rows(srv):
    """A limits.db made before user_version was used (level 0, same tables) opens as it is:
    a suspension recorded in it still holds, and the open marks it level 1."""
    import sqlite3
    user = "r4@example.test"
    db = sqlite3.connect(os.path.join(srv.data, "limits.db"))
    db.execute("INSERT INTO suspended(user, t, reason) VALUES (?, 1700000000, 'old')", (user,))
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    out = postino("user", "show", user, "--data", srv.data).stdout
    assert "suspended:   yes" in out, out
    db = sqlite3.connect(os.path.join(srv.data, "limits.db"))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    r = postino("user", "unsuspend", user, "--data", srv.data)
    assert "may send mail again" in r.stdout
