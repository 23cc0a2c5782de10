"""Logs for shippers (issue 14): with log_format = json every line the server writes (master,
workers, queue; sessions of every protocol, a reload, the stop) is one JSON object whose members
are the key=value fields of the text format, peer bytes included, escaped."""
import imaplib
import json
import re
import os
import poplib
import signal
import smtplib
import socket
import subprocess

from conftest import SANITIZER_MARKERS, wait_until
from postino_server import BIN, Server

USER = "alice@example.test"


def test_json_log_lines_parse_and_carry_the_fields():
    srv = Server(extra_conf="log_format = json\nlog_debug = yes", users=(USER,),
                 wait_for=("smtp", "imap", "pop3"))
    try:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.ehlo("client.example")
            s.sendmail("someone@remote.test", [USER], b"Subject: hi\r\n\r\nbody\r\n")
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
            s.starttls(context=srv.ctx())
            s.login(USER, srv.password)
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx())
        m.login(USER, srv.password)
        m.logout()
        evil = 'evil"\x07\\x@example.test'
        p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx())
        p.user(evil)
        try:
            p.pass_("wrong")
        except poplib.error_proto:
            pass
        p.quit()
        # a browser on a mail port: the request line is logged, quoted
        with socket.create_connection(("127.0.0.1", srv.port("pop3")), 5) as c:
            c.recv(200)
            c.sendall(b"GET /\x1b[2J HTTP/1.1\r\n")
            c.recv(200)
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_until(lambda: open(srv.log.name).read().count('"event":"worker-started"') == 4,
                   what="the reload's workers")
        os.killpg(srv.proc.pid, signal.SIGTERM)
        assert srv.proc.wait(40) == 0
        lines = open(srv.log.name, encoding="utf-8").read().split("\n")
        assert lines[-1] == ""
        events = []
        for line in lines[:-1]:
            if re.match(r"==\d+==", line) and not any(m in line for m in SANITIZER_MARKERS):
                continue    # the ASan runtime's own notes at exit ("thread was not suspended")
            obj = json.loads(line)          # every line is one JSON object
            assert isinstance(obj, dict), line
            assert set(obj) >= {"time", "level", "proc", "pid"}, line
            assert obj["level"] in ("debug", "info", "warn", "error"), line
            assert all(isinstance(v, str) for k, v in obj.items() if k != "pid"), line
            events.append(obj)
        procs = {e["proc"] for e in events}
        assert procs >= {"postino/master", "postino/worker", "postino/queue"}
        logins = [e for e in events if e.get("event") == "login"]
        assert {(e["proto"], e["result"]) for e in logins} >= {
            ("smtp", "ok"), ("imap", "ok"), ("pop3", "failed")}
        failed = [e for e in logins if e["proto"] == "pop3"][0]
        assert failed["user"] == evil            # quotes, backslash and control octet survive
        assert any(e.get("cmd") == "MAIL" for e in events)       # log_debug: every command
        http = [e for e in events if e.get("event") == "http-on-mail-port"]
        assert http and http[0]["line"] == "GET /\x1b[2J HTTP/1.1"
        assert [e["event"] for e in events if e["proc"] == "postino/master"][-1] == "stopped"
        accepted = [e for e in events if e.get("event") == "accepted"]
        assert len(accepted) == 1 and accepted[0]["from"] == "<someone@remote.test>"
    finally:
        srv.stop()


def test_log_format_is_checked(tmp_path):
    conf = tmp_path / "postino.conf"
    conf.write_text("data_dir = %s\nlog_format = xml\n" % tmp_path)
    cp = subprocess.run([BIN, "config", "show", "--config", str(conf)], capture_output=True,
                        text=True)
    assert cp.returncode == 1
    assert "postino.conf:2: 'log_format' expects text or json, got 'xml'" in cp.stderr
