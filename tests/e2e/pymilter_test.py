"""A milter written with Debian's python3-milter (pymilter, over Sendmail's libmilter): an
independent implementation of the milter protocol for tests/e2e/test_milter.py.

    /usr/bin/python3 pymilter_test.py PORT LOGDIR

What it does with a message is read from its Subject: "... action=NAME" (see eom). The earlier
stages answer at once, as milters do in Postfix's smtpd_milters: a client from 127.0.0.2 is
rejected at CONNECT, one from 127.0.0.3 tempfailed; HELO reject-helo.test is rejected; MAIL
FROM <reject-mail@...> is rejected and <accept-mail@...> accepted (the milter is done with
that message); RCPT TO <reject-rcpt@...> is rejected, <tempfail-rcpt@...> tempfailed,
<discard-rcpt@...> discards the message, and <slow-rcpt@...> is answered only after SLOW
seconds. One milter connection serves a whole SMTP session, so the per-message record is reset
at MAIL. Every message leaves LOGDIR/<Message-ID token>.json with what the milter was told at
each stage (client address, HELO, sender, recipients, headers, body size, macros), so a test
can check that postino sent every stage.
"""
import json
import os
import sys
import time

import Milter


LOGDIR = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
SLOW = 8   # seconds: longer than the tests' milter_command_timeout


class TestMilter(Milter.Base):
    def __init__(self):
        self.info = {"headers": [], "rcpts": [], "body": 0, "chunks": 0}

    def connect(self, hostname, family, hostaddr):
        self.info["connect"] = {"hostname": hostname, "family": int(family),
                                "addr": list(hostaddr) if hostaddr else None}
        self.info["daemon_name"] = self.getsymval("{daemon_name}")
        ip = hostaddr[0] if hostaddr else ""
        if ip == "127.0.0.2":
            return Milter.REJECT
        if ip == "127.0.0.3":
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def hello(self, heloname):
        self.info["helo"] = heloname
        if heloname == "reject-helo.test":
            self.setreply("550", "5.7.1", "HELO refused by the test milter")
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *args):
        # a new message on the same connection
        self.info.update({"headers": [], "rcpts": [], "body": 0, "chunks": 0})
        self.info.pop("eoh", None)
        self.info["from"] = mailfrom
        self.info["queue_id"] = self.getsymval("i")
        self.info["auth_authen"] = self.getsymval("{auth_authen}")
        if mailfrom.startswith("<reject-mail@"):
            self.setreply("550", "5.7.1", "sender refused by the test milter")
            return Milter.REJECT
        if mailfrom.startswith("<accept-mail@"):
            return Milter.ACCEPT
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *args):
        self.info["rcpts"].append(rcpt)
        if rcpt.startswith("<tempfail-rcpt@"):
            return Milter.TEMPFAIL
        if rcpt.startswith("<reject-rcpt@"):
            self.setreply("550", "5.7.1", "recipient refused by the test milter")
            return Milter.REJECT
        if rcpt.startswith("<discard-rcpt@"):
            return Milter.DISCARD
        if rcpt.startswith("<slow-rcpt@"):
            # a line in LOGDIR/slow-rcpt.log tells a test that postino waits for this answer
            with open(os.path.join(LOGDIR, "slow-rcpt.log"), "a") as f:
                f.write("%s\n" % rcpt)
            time.sleep(SLOW)   # the subject: a milter slower than milter_command_timeout
        return Milter.CONTINUE

    def header(self, name, value):
        self.info["headers"].append([name, value])
        return Milter.CONTINUE

    def eoh(self):
        self.info["eoh"] = True
        return Milter.CONTINUE

    def body(self, chunk):
        self.info["body"] += len(chunk)
        self.info["chunks"] += 1
        self.info["max_chunk"] = max(self.info.get("max_chunk", 0), len(chunk))
        return Milter.CONTINUE

    def eom(self):
        subject = ""
        token = "unknown"
        for name, value in self.info["headers"]:
            if name.lower() == "subject":
                subject = value
            if name.lower() == "message-id":
                token = value.strip("<>").split("@")[0]
        with open(os.path.join(LOGDIR, token + ".json.tmp"), "w") as f:
            json.dump(self.info, f)
        os.rename(os.path.join(LOGDIR, token + ".json.tmp"), os.path.join(LOGDIR, token + ".json"))
        action = subject.split("action=")[-1].split()[0] if "action=" in subject else "accept"
        if action == "reject":
            return Milter.REJECT
        if action == "tempfail":
            return Milter.TEMPFAIL
        if action == "discard":
            return Milter.DISCARD
        if action == "replycode":
            self.setreply("554", "5.7.0", "Custom refusal from the test milter")
            return Milter.REJECT
        if action == "replycode4":
            self.setreply("452", "4.3.1", "Milter busy, come back later")
            return Milter.TEMPFAIL
        if action == "headers":
            self.addheader("X-Test-Milter", "added by pymilter")
            self.addheader("X-Test-First", "inserted on top", 0)
            self.chgheader("Subject", 1, "changed by the milter")
            self.chgheader("X-Remove-Me", 1, "")
            return Milter.ACCEPT
        if action == "quarantine":
            self.quarantine("test quarantine reason")
            return Milter.ACCEPT
        if action == "hang":
            time.sleep(60)   # the subject: a milter that never answers the end of message
            return Milter.ACCEPT
        return Milter.ACCEPT


def main():
    port = int(sys.argv[1])
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    Milter.runmilter("postino-test", "inet:%d@127.0.0.1" % port, 240)


if __name__ == "__main__":
    main()
