"""Start a throw-away postino for a test module: test CA, certificates, data dir, accounts.

Used by the POP3 and IMAP suites; every instance listens on its own loopback port range.
"""
import os
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time

from queuehelp import shared_resolver_conf

from conftest import POSTINO_BIN as BIN   # set from POSTINO_BIN, checked when pytest starts
PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993,
         "pop3": 110, "pop3s": 995, "http": 80, "https": 443}


def _free(offset):
    for p in PORTS.values():
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", offset + p))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _run(*args, stdin=None, check=True):
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=check)


class Server:
    """A running postino with helpers to reach it."""

    def __init__(self, extra_conf="", users=("alice@example.test",), password="Secret-pw-1",
                 wait_for=("smtp", "pop3"), quickstart_args=(), env=None, prepare=None):
        self.wait_for = wait_for
        self.dir = tempfile.mkdtemp(prefix="postino-e2e-")
        self.data = os.path.join(self.dir, "data")
        self.password = password
        while True:
            # listeners stay below the kernel's ephemeral ports (32768-60999): a client's
            # outgoing connection holding one of them as its local port would make a restart's
            # bind fail (EADDRINUSE); peers the tests start (queuehelp.free_port) use 30000-32699
            self.offset = random.randrange(10000, 29000, 10)
            if _free(self.offset):
                break
        self._make_ca()
        # as root the workers run as a system user (quickstart's default, or --user): it must
        # reach the data directory (the master alone reads the certificate and key)
        os.chmod(self.dir, 0o755)
        _run(BIN, "quickstart", "mail.example.test", "--data", self.data,
             "--port-offset", str(self.offset), "--domain", "example.test", *quickstart_args)
        # the old main that new tests are checked against may predate login_failure_delay
        floor_known = "login_failure_delay =" in _run(BIN, "config", "show", "--data",
                                                      self.data).stdout
        with open(os.path.join(self.data, "postino.conf"), "a") as f:
            f.write("\ntls_cert = %s\ntls_key = %s\n" % (self.cert, self.key))
            f.write("login_delay_max = 1s\n")   # short brute-force delays keep tests quick
            if floor_known:
                f.write("login_failure_delay = 0s\n")   # the 2 s floor has tests of its own
            f.write(shared_resolver_conf())   # before extra_conf: a test's own wins
            f.write(extra_conf + "\n")
        for u in users:
            self.add_user(u)
        if prepare is not None:   # a test's own set-up of the data dir before `serve`
            prepare(self)
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        # env: the environment of `serve` (None: this process's)
        self.proc = subprocess.Popen([BIN, "serve", "--data", self.data], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.wait_ready()

    def _make_ca(self):
        d = self.dir
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        cakey = os.path.join(d, "ca.key")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", cakey, "-out", self.ca, "-days", "2", "-subj", "/CN=postino test CA")
        csr = os.path.join(d, "server.csr")
        _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.key, "-out", csr, "-subj", "/CN=mail.example.test")
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:mail.example.test,DNS:localhost,IP:127.0.0.1\n")
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", cakey,
             "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext)

    def port(self, name):
        return self.offset + PORTS[name]

    def ctx(self):
        c = ssl.create_default_context(cafile=self.ca)
        c.check_hostname = True
        return c

    def add_user(self, address, password=None):
        _run(BIN, "user", "add", address, "--data", self.data, stdin=(password or self.password) + "\n")

    def wait_ready(self, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("postino exited: " + open(self.log.name).read())
            try:
                for name in self.wait_for:
                    socket.create_connection(("127.0.0.1", self.port(name)), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("postino did not start: " + open(self.log.name).read())

    def wait_group_gone(self, timeout=10):
        """After the master was killed or stopped: wait until its workers are gone too. Until
        the last one exits, its listening sockets still complete handshakes, so a restart's
        wait_ready could pass on them and the next connection be reset or refused."""
        end = time.time() + timeout
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            if time.time() > end:
                raise RuntimeError("the workers of %d did not exit" % self.proc.pid)
            time.sleep(0.02)

    def maildir(self, address):
        local, domain = address.split("@")
        return os.path.join(self.data, "mail", domain, local)

    def index(self, address):
        return sqlite3.connect(os.path.join(self.maildir(address), "index.db"))

    def deliver(self, to, body, sender="sender@remote.test"):
        """Deliver over SMTP port 25 and wait for the 250."""
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.port("smtp"), timeout=10) as s:
            s.sendmail(sender, [to], body)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
