"""Test peers for the outbound queue: a local DNS (Debian's unbound serving a test zone), SMTP
sinks (aiosmtpd) on 127.0.0.x addresses, and hostile SMTP servers (raw sockets).

Everything listens on loopback only and stops with its fixture. Below them, what the tests of
servers that deliver into that network share (test_queue, test_dane, test_mta_sts, test_dkim):
their settings, submitting and checking the log.
"""
import asyncio
import os
import random
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
import zlib

from aiosmtpd.controller import Controller


def free_port(hosts=("127.0.0.1",), udp=False):
    """A port free on every host given (TCP, and UDP when asked)."""
    while True:
        # below the ephemeral ports (32768-) and above the servers' listeners (10000-29985)
        p = random.randrange(30000, 32700)
        ok = True
        for h in hosts:
            for kind in ([socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((h, p))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return p


class Dns:
    """unbound -d -c CONF serving `records` (zone file lines) under local zones, on
    host:port (default 127.0.0.1 and a free port)."""

    def __init__(self, zones, records, host="127.0.0.1", port=None, auth_zones=()):
        self.dir = tempfile.mkdtemp(prefix="postino-dns-")
        os.chmod(self.dir, 0o755)
        self.host = host
        self.port = port or free_port(udp=True)
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write("server:\n")
            f.write("  interface: %s@%d\n  port: %d\n" % (host, self.port, self.port))
            f.write('  do-daemonize: no\n  username: ""\n  chroot: ""\n')
            f.write('  directory: "%s"\n  pidfile: "%s/unbound.pid"\n' % (self.dir, self.dir))
            f.write("  use-syslog: no\n  verbosity: 0\n  do-ip6: no\n")
            f.write("  access-control: 127.0.0.0/8 allow\n")
            f.write('  module-config: "iterator"\n')
            if auth_zones:   # served from (signed) zone files below: not the default static test.
                f.write('  local-zone: "test." nodefault\n')
            for z in zones:
                f.write('  local-zone: "%s." static\n' % z)
            for r in records:   # TXT data has double quotes: wrap those in single ones
                f.write(("  local-data: '%s'\n" if '"' in r else '  local-data: "%s"\n') % r)
            for name, path in auth_zones:
                f.write('auth-zone:\n  name: "%s"\n  zonefile: "%s"\n  for-upstream: yes\n'
                        '  for-downstream: yes\n' % (name, path))
            f.write("remote-control:\n  control-enable: no\n")
        self.log = open(os.path.join(self.dir, "unbound.log"), "w")
        self.proc = subprocess.Popen(["unbound", "-d", "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        end = time.time() + 10
        while time.time() < end:
            if self._answers():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("unbound did not start: " + open(self.log.name).read())

    def _answers(self):
        # a minimal DNS query for "test." SOA over UDP
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x06\x00\x01"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.3)
        try:
            s.sendto(q, (self.host, self.port))
            return s.recv(512)[:2] == b"\x12\x34"
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_shared_dns = None


def shared_resolver_conf():
    """A "dns_servers = 127.0.0.1:PORT" line for test servers that need no DNS records: one
    unbound per test process answering every question with NXDOMAIN at once. Port 25 mail is
    checked with SPF, DKIM and DMARC (issue 12); a test machine's resolver may be unreachable,
    and a lookup that times out is a 451. Tests that need records start their own Dns and set
    dns_servers after this line (the last setting wins). "" when unbound is missing."""
    global _shared_dns
    if _shared_dns is None:
        if shutil.which("unbound") is None:
            return ""
        import atexit
        _shared_dns = Dns([""], [])
        atexit.register(_shared_dns.stop)
    return "dns_servers = 127.0.0.1:%d\n" % _shared_dns.port


class Recorder:
    """aiosmtpd handler: records every message; recipients decide the answers.

    local part "reject*"  -> 550 5.1.1 at RCPT
    local part "temp*"    -> 451 4.2.0 at RCPT the first `temp_times` times
    local part "bigfail*" -> 552 5.3.4 at end of data
    """

    def __init__(self, name, temp_times=1):
        self.name = name
        self.messages = []      # (mail_from, [rcpts], content bytes, mail_options)
        self.peers = []         # the client address of each message's session
        self.temp_seen = {}
        self.temp_times = temp_times
        self.lock = threading.Lock()
        self.in_data = 0        # DATA phases in progress now, and the most at once
        self.max_in_data = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: no such user here" % address
        if local.startswith("temp"):
            with self.lock:
                n = self.temp_seen.get(address, 0)
                self.temp_seen[address] = n + 1
            if n < self.temp_times:
                return "451 4.2.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].lower().startswith("bigfail") for r in envelope.rcpt_tos):
            return "552 5.3.4 message too big for us"
        if any(r.split("@")[0].lower().startswith("slow") for r in envelope.rcpt_tos):
            await asyncio.sleep(0.15)   # widen the window for kill -9 before our 250
        if any(r.split("@")[0].lower().startswith("conc") for r in envelope.rcpt_tos):
            with self.lock:             # how many of our connections are busy at once
                self.in_data += 1
                self.max_in_data = max(self.max_in_data, self.in_data)
            await asyncio.sleep(0.4)
            with self.lock:
                self.in_data -= 1
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  bytes(envelope.original_content or envelope.content),
                                  list(envelope.mail_options)))
            self.peers.append(session.peer)
        return "250 2.0.0 queued as %d" % len(self.messages)

    def find(self, token):
        with self.lock:
            return [m for m in self.messages if token.encode() in m[2]]


class Sink:
    def __init__(self, host, port, name=None, **kw):
        self.handler = Recorder(name or host, **kw)
        self.controller = Controller(self.handler, hostname=host, port=port,
                                     enable_SMTPUTF8=True, ready_timeout=10)
        self.controller.start()

    def stop(self):
        self.controller.stop()


def tls_sink(ip, port, cert=None):
    """A recording sink on ip:port offering STARTTLS with cert (a (certfile, keyfile) pair), or
    plaintext only without. Returns (controller, handler)."""
    h = Recorder(ip)
    kw = {}
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        kw["tls_context"] = ctx
    c = Controller(h, hostname=ip, port=port, ready_timeout=10, **kw)
    c.start()
    return c, h


class Hostile:
    """A raw SMTP server that misbehaves in one of several ways (mode)."""

    def __init__(self, host, port, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.stopped = False
        self.connections = 0
        self.bytes_sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _send(self, c, data):
        c.sendall(data)
        self.bytes_sent += len(data)

    def _readline(self, f):
        line = f.readline(10000)
        if not line:
            raise OSError("closed")
        return line

    def _serve(self, c):
        c.settimeout(120)
        f = c.makefile("rb")
        try:
            m = self.mode
            if m == "endless-multiline":
                # a greeting that never ends, at a steady pace
                self._send(c, b"220-hello\r\n")
                while not self.stopped:
                    self._send(c, b"220-more and more and more\r\n" * 50)
                    time.sleep(0.01)   # the subject: a peer that talks on at a steady pace
                return
            if m == "no-crlf":
                while not self.stopped:
                    self._send(c, b"220 x" + b"y" * 4096)
                    time.sleep(0.01)   # the subject: a peer that talks on at a steady pace
                return
            self._send(c, b"220 hostile.test ESMTP\r\n")
            while not self.stopped:
                line = self._readline(f).strip().upper()
                if line.startswith(b"EHLO"):
                    self._send(c, b"250-hostile.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
                               if m == "starttls-inject" else
                               b"250-hostile.test\r\n250 PIPELINING\r\n")
                elif line.startswith(b"STARTTLS"):
                    # the reply, and commands pushed behind it in the same packet
                    self._send(c, b"220 go ahead\r\n250-injected\r\n250 more injected\r\n")
                elif line.startswith(b"MAIL") or line.startswith(b"RCPT"):
                    self._send(c, b"250 ok\r\n")
                elif line.startswith(b"DATA"):
                    self._send(c, b"354 go\r\n")
                    while self._readline(f) != b".\r\n":
                        pass
                    if m == "hang-after-data":
                        while not self.stopped:
                            time.sleep(0.2)   # the subject: a peer that never answers
                        return
                    self._send(c, b"250 ok\r\n")
                elif line.startswith(b"QUIT"):
                    self._send(c, b"221 bye\r\n")
                    return
                else:
                    self._send(c, b"250 ok\r\n")
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def spool(data_dir, sender, rcpts, body, crc=None, notify="-", smtputf8=0):
    """Write a queue entry the way smtp-data.c does (body, then the .env commit point)."""
    qid = "%016x" % random.getrandbits(64)
    qdir = os.path.join(data_dir, "queue")
    full = b"Return-Path: <%s>\r\n" % sender.encode() + body
    with open(os.path.join(qdir, qid + ".msg"), "wb") as f:
        f.write(full)
    c = zlib.crc32(full) if crc is None else crc
    env = ("version 1\nid %s\narrived %d\nfrom <%s>\nbody 7BIT\nsmtputf8 0\nret -\nenvid -\n"
           "auth -\nsize %d\ncrc32 %08x\n" % (qid, int(time.time()), sender, len(full), c))
    env = env.replace("smtputf8 0\n", "smtputf8 %d\n" % smtputf8)
    for r in rcpts:
        env += "rcpt <%s> notify=%s orcpt=-\n" % (r, notify)
    tmp = os.path.join(qdir, qid + ".env.tmp")
    with open(tmp, "w") as f:
        f.write(env)
    os.rename(tmp, os.path.join(qdir, qid + ".env"))
    return qid


ALICE = "alice@example.test"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def outbound_conf(net, extra="", connect="2s", reply="3s"):
    """postino.conf lines for a server whose queue delivers into the test network net (its Dns
    as net["dns"], the port every remote SMTP server listens on as net["port"]): quick retries,
    no delay notices, then extra."""
    return ("dns_servers = 127.0.0.1:%d\nremote_smtp_port = %d\nqueue_retry_min = 1s\n"
            "queue_retry_max = 2s\nsmtp_connect_timeout = %s\nsmtp_reply_timeout = %s\n"
            "queue_delay_notice = 0\n%s" % (net["dns"].port, net["port"], connect, reply, extra))


def log_text(srv):
    with open(srv.log.name, errors="replace") as f:
        return f.read()


def wait_log(srv, *needles, timeout=20):
    """Wait until every needle is in the server's log."""
    return wait_for(lambda: all(n in log_text(srv) for n in needles), timeout)


def stop_checked(s):
    """Stop a server; its log must be free of sanitizer reports (ASan/UBSan builds)."""
    s.stop_log = None
    if s.proc.poll() is None:
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(20)
    text = log_text(s)
    s.stop()
    bad = [m for m in SANITIZER_MARKERS if m in text]
    assert not bad, text[-8000:]


def submit(srv, rcpts, body, sender=ALICE, user=ALICE):
    """Submit on 587 (STARTTLS + AUTH); returns the queue id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20) as s:
        s.starttls(context=srv.ctx())
        s.login(user, srv.password)
        code, _ = s.mail(sender)
        assert code == 250
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, resp
        code, resp = s.data(body)
        assert code == 250, resp
        return resp.decode().split("message ")[1].split()[0]


def make_msg(token, to, extra_body=b""):
    return (b"From: <alice@example.test>\r\nTo: <%s>\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@example.test>\r\n\r\nhello %s\r\n%s"
            % (to.encode(), token.encode(), token.encode(), token.encode(), extra_body))


def send_token(srv, rcpt):
    """Submit a message with a new token to rcpt; returns the token."""
    token = uuid.uuid4().hex
    submit(srv, [rcpt], make_msg(token, rcpt))
    return token


def wait_for(pred, timeout=20, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()
