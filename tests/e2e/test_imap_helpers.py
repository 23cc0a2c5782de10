"""Shared helpers for the IMAP end-to-end suites (test_imap*.py); holds no tests itself.

- `srv`: a module-scoped throw-away postino (postino_server.Server) with SMTP, IMAP(S) and
  POP3(S) up; every test checks afterwards that the server log shows no sanitizer report and no
  dead worker.
- `user`: a fresh account per test (srv.add_user), so tests never share a mailbox.
- `Imap`: a small IMAP client over a raw socket that keeps the whole dialogue (`.dialogue()`),
  parses responses (literals, lists, NIL, BODY[...] atoms) and lets a test send exact bytes.
  Assertion messages include the dialogue so a failure reads as an IMAP transcript.
- `imaplib_login`: a logged-in imaplib client over 993 or over 143 with STARTTLS.
"""
import atexit
import imaplib
import os
import shutil
import subprocess
import tempfile
import re
import socket
import ssl
import time
import uuid

import pytest

import postino_server
from postino_server import Server

HOST = "mail.example.test"
CRASH_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:",
                 b"UndefinedBehaviorSanitizer", b"event=worker-died")


# ------------------------------------------------------------------ server fixtures

_bin_copy = []


def _private_binary():
    """A private copy of POSTINO_BIN, so that a rebuild of the work tree while the suite runs
    (ninja replacing build/postino) cannot make a later server start or CLI call fail."""
    if not _bin_copy:
        d = tempfile.mkdtemp(prefix="postino-imap-bin-")
        dst = os.path.join(d, "postino")
        shutil.copy2(postino_server.BIN, dst)
        atexit.register(shutil.rmtree, d, True)
        _bin_copy.append(dst)
        postino_server.BIN = dst
    return _bin_copy[0]


def make_server(**kw):
    _private_binary()
    kw.setdefault("users", ())
    kw.setdefault("wait_for", ("smtp", "imap", "imaps", "pop3", "pop3s"))
    return Server(**kw)


SHIM_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shim", "fsyncshim.c")


def fsync_shim(prefix):
    """Generator for a module fixture: tests/shim/fsyncshim.c built here with cc, and its
    control directory: yields (shared object, control dir), removes both after."""
    d = tempfile.mkdtemp(prefix=prefix)
    so = os.path.join(d, "fsyncshim.so")
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the fsync shim"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so, SHIM_SRC, "-ldl"], check=True)
    ctl = os.path.join(d, "ctl")
    os.mkdir(ctl)
    os.chmod(d, 0o755)
    os.chmod(ctl, 0o777)   # the workers may run as another user (run_user)
    yield so, ctl
    shutil.rmtree(d, ignore_errors=True)


def shim_server(so, ctl, user):
    """Generator for a module fixture: a one-worker server with the fsync shim preloaded and
    one account; fails the module if its log shows a crash."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = (so + " " + env["LD_PRELOAD"]) if env.get("LD_PRELOAD") else so
    env["POSTINO_FSYNC_SHIM"] = ctl
    env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                               "verify_asan_link_order=0") if x)
    s = make_server(extra_conf="workers = 1\n", users=(user,), env=env)
    yield s
    bad = [m for m in CRASH_MARKERS if m in log_bytes(s)]
    s.stop()
    assert not bad, "server log shows %s" % bad


def log_bytes(s):
    try:
        with open(s.log.name, "rb") as f:
            return f.read()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def srv():
    s = make_server()
    yield s
    bad = [m for m in CRASH_MARKERS if m in log_bytes(s)]
    s.stop()
    assert not bad, "server log shows %s" % bad


@pytest.fixture(autouse=True)
def _no_crash(request):
    """Fail the test during which the server logged a sanitizer report or lost a worker."""
    if "srv" not in request.fixturenames:
        yield
        return
    s = request.getfixturevalue("srv")
    mark = len(log_bytes(s))
    yield
    new = log_bytes(s)[mark:]
    bad = [m.decode() for m in CRASH_MARKERS if m in new]
    if bad:
        pytest.fail("server log during this test shows %s:\n%s"
                    % (bad, new.decode("utf-8", "replace")[-6000:]))


def new_user(srv, prefix="u"):
    addr = "%s%s@example.test" % (prefix, uuid.uuid4().hex[:10])
    srv.add_user(addr)
    return addr


@pytest.fixture
def user(srv):
    return new_user(srv)


@pytest.fixture
def clients():
    """Factory list: every Imap/imaplib client appended here is closed after the test."""
    made = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def all_started(srv):
    """Have every worker the master spawned and the queue process logged that they run?"""
    text = log_bytes(srv)
    m = re.search(rb"event=started hostname=\S+ workers=(\d+)", text)
    return bool(m) and text.count(b"event=worker-started") >= int(m.group(1)) and \
        b"event=queue-started" in text


def sessions_at_rest(srv, mark, n):
    """Are at least n IMAP sessions that logged a rest or wake after log offset mark all at
    rest (their last such event a rest)? Needs log_debug = yes."""
    last = {}
    for m in re.finditer(rb"sess=([0-9a-f]+) proto=imap event=(rest|wake)\n",
                         log_bytes(srv)[mark:]):
        last[m.group(1)] = m.group(2)
    return len(last) >= n and all(v == b"rest" for v in last.values())


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def message(subject="hello", frm="Sender <sender@remote.test>", to="rcpt@example.test",
            body="Hello there.\r\n", extra_headers="", msgid=None, date=None):
    msgid = msgid or "<%s@remote.test>" % uuid.uuid4().hex
    date = date or "Mon, 07 Jul 2025 10:00:00 +0000"
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n%s"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s"
            % (frm, to, subject, date, msgid, extra_headers, body))


# ------------------------------------------------------------------ response parsing

class ParseError(Exception):
    pass


class Lit(bytes):
    """A literal to send: Imap.cmd sends "{n}" and waits for "+" (or "{n+}" with plus=True)."""
    def __new__(cls, data, plus=False, binary=False):
        o = bytes.__new__(cls, data)
        o.plus = plus
        o.binary = binary
        return o


def _tokenize(data, pos=0, depth=0):
    """Parse IMAP response data from data[pos:] into a list. Atoms -> str, quoted/literal ->
    bytes, NIL -> None, parenthesized lists -> list. Returns (items, pos)."""
    out = []
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c == b" ":
            pos += 1
            continue
        if c == b"(":
            sub, pos = _tokenize(data, pos + 1, depth + 1)
            out.append(sub)
            continue
        if c == b")":
            if depth == 0:
                raise ParseError("unbalanced ')' at %d" % pos)
            return out, pos + 1
        if c == b"\r" and data[pos:pos + 2] == b"\r\n":
            pos += 2
            continue
        if c == b'"':
            pos += 1
            buf = bytearray()
            while True:
                if pos >= n:
                    raise ParseError("unterminated quoted string")
                ch = data[pos]
                if ch == 0x5c:
                    buf.append(data[pos + 1])
                    pos += 2
                    continue
                if ch == 0x22:
                    pos += 1
                    break
                buf.append(ch)
                pos += 1
            out.append(bytes(buf))
            continue
        m = re.compile(rb"~?\{(\d+)\+?\}\r\n").match(data, pos)
        if m:
            ln = int(m.group(1))
            start = m.end()
            out.append(bytes(data[start:start + ln]))
            pos = start + ln
            continue
        # atom, possibly with [ ... ] (which may hold spaces and parens) and <partial>
        start = pos
        while pos < n:
            ch = data[pos:pos + 1]
            if ch == b"[":
                close = data.find(b"]", pos)
                if close < 0:
                    raise ParseError("unterminated [")
                pos = close + 1
                continue
            if ch in (b" ", b"(", b")", b"\r"):
                break
            pos += 1
        atom = data[start:pos].decode("utf-8", "replace")
        out.append(None if atom.upper() == "NIL" else atom)
    if depth:
        raise ParseError("missing ')'")
    return out, pos


def parse(data):
    return _tokenize(data)[0]


def fetch_dict(items):
    """['UID', '3', 'FLAGS', [...], ...] -> {'UID': '3', 'FLAGS': [...], ...} (keys upper)."""
    d = {}
    for i in range(0, len(items) - 1, 2):
        d[items[i].upper() if isinstance(items[i], str) else items[i]] = items[i + 1]
    return d


class Resp:
    def __init__(self, tag, status, text, untagged, raw):
        self.tag, self.status, self.text, self.untagged, self.raw = tag, status, text, untagged, raw

    def __repr__(self):
        return "<%s %s %r (+%d untagged)>" % (self.tag, self.status, self.text, len(self.untagged))

    @property
    def code(self):
        m = re.match(r"\[([^\]]*)\]", self.text)
        return m.group(1) if m else None

    def of(self, kind):
        """Untagged responses of a kind: '* KIND ...' or '* n KIND ...', parsed."""
        kind = kind.upper()
        out = []
        for u in self.untagged:
            p = parse(u)
            if len(p) >= 2 and isinstance(p[1], str) and p[1].upper() == kind:
                out.append(p[2:])
            elif len(p) >= 3 and isinstance(p[2], str) and p[2].upper() == kind:
                out.append([int(p[1])] + p[3:])
        return out

    def fetches(self):
        """{seq: fetch-dict} (later FETCH responses for one message are merged)."""
        out = {}
        for f in self.of("FETCH"):
            out.setdefault(f[0], {}).update(fetch_dict(f[1]))
        return out

    def expunges(self):
        return [e[0] for e in self.of("EXPUNGE")]

    def exists(self):
        e = self.of("EXISTS")
        return e[-1][0] if e else None

    def ok_codes(self):
        """Texts of untagged OK responses."""
        return [u for u in self.untagged if re.match(rb"\* OK ", u)]


class Imap:
    """A small IMAP client. `how`: 'imaps' (993), 'starttls' (143 + STARTTLS) or 'plain'."""

    def __init__(self, srv, how="imaps", timeout=10):
        self.srv = srv
        self.timeout = timeout
        self.log = []
        self.buf = b""
        self.ntag = 0
        self.sock = socket.create_connection(("127.0.0.1", srv.port("imaps" if how == "imaps"
                                                                      else "imap")), timeout)
        if how == "imaps":
            self.sock = srv.ctx().wrap_socket(self.sock, server_hostname=HOST)
        self.greeting = self.read_response()
        if how == "starttls":
            r = self.cmd("STARTTLS")
            assert r.status == "OK", self.dialogue()
            self.starttls()

    # -- transport
    def starttls(self):
        assert self.buf == b"", "plaintext buffered before TLS: %r" % self.buf
        self.sock = self.srv.ctx().wrap_socket(self.sock, server_hostname=HOST)
        self.log.append(("--", b"TLS handshake done"))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.log.append(("C", data))
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise
        except (ssl.SSLError, OSError) as e:
            raise EOFError("connection error: %s" % e)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def read_line(self, timeout=None):
        while b"\r\n" not in self.buf:
            self._fill(timeout)
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read_response(self, timeout=None):
        """One complete response (untagged, tagged or continuation), literals included."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        out = b""
        while True:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            out += line
            m = re.search(rb"~?\{(\d+)\+?\}\r\n$", line)
            if not m:
                break
            need = int(m.group(1))
            while len(self.buf) < need:
                self._fill(max(0.01, deadline - time.monotonic()))
            out += self.buf[:need]
            self.buf = self.buf[need:]
        self.log.append(("S", out))
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def alive(self):
        try:
            return self.cmd("NOOP").status == "OK"
        except (EOFError, OSError, socket.timeout):
            return False

    def dialogue(self, last=60):
        lines = []
        for who, data in self.log[-last:]:
            text = data.decode("utf-8", "replace")
            if len(text) > 600:
                text = text[:300] + " ...(%d octets)... " % len(text) + text[-200:]
            for l in text.rstrip("\r\n").split("\r\n"):
                lines.append("%s: %s" % (who, l))
        return "\n".join(lines)

    # -- commands
    def next_tag(self):
        self.ntag += 1
        return "t%d" % self.ntag

    def collect(self, tag, timeout=None):
        untagged = []
        while True:
            r = self.read_response(timeout)
            if r.startswith(tag.encode() + b" "):
                m = re.match(rb"(\S+) (OK|NO|BAD)(?: (.*))?\r\n", r, re.S)
                if not m:
                    raise AssertionError("bad tagged line %r\n%s" % (r, self.dialogue()))
                return Resp(tag, m.group(2).decode(), (m.group(3) or b"").decode("utf-8", "replace"),
                            untagged, r)
            if r.startswith(b"+"):
                raise AssertionError("unexpected continuation\n" + self.dialogue())
            untagged.append(r)

    def cmd(self, *parts, tag=None, timeout=None):
        """Send one command built from parts (str/bytes joined by spaces; Lit for literals) and
        read up to its tagged completion. A synchronising literal waits for '+'; if the server
        answers with a tagged reply instead, that reply is returned."""
        tag = tag or self.next_tag()
        chunk = tag.encode()
        untagged = []
        for p in parts:
            if isinstance(p, Lit):
                chunk += b" " + (b"~" if p.binary else b"") + b"{%d%s}\r\n" % (
                    len(p), b"+" if p.plus else b"")
                if p.plus:
                    chunk += bytes(p)
                    continue
                self.send(chunk)
                while True:
                    r = self.read_response(timeout)
                    if r.startswith(b"+"):
                        break
                    if r.startswith(tag.encode() + b" "):
                        m = re.match(rb"(\S+) (OK|NO|BAD)(?: (.*))?\r\n", r, re.S)
                        return Resp(tag, m.group(2).decode(), (m.group(3) or b"").decode(), untagged, r)
                    untagged.append(r)
                chunk = bytes(p)
            else:
                if isinstance(p, str):
                    p = p.encode()
                chunk += b" " + p
        self.send(chunk + b"\r\n")
        r = self.collect(tag, timeout)
        r.untagged = untagged + r.untagged
        return r

    def ok(self, *parts, **kw):
        r = self.cmd(*parts, **kw)
        assert r.status == "OK", "expected OK for %r, got %s %s\n%s" % (
            parts, r.status, r.text, self.dialogue())
        return r

    def expect(self, status, *parts, **kw):
        r = self.cmd(*parts, **kw)
        assert r.status == status, "expected %s for %r, got %s %s\n%s" % (
            status, parts, r.status, r.text, self.dialogue())
        return r

    def login(self, user, password=None):
        return self.ok("LOGIN", quote(user), quote(password or self.srv.password))

    def caps(self):
        r = self.ok("CAPABILITY")
        return set(r.of("CAPABILITY")[0])


def quote(s):
    if isinstance(s, bytes):
        s = s.decode()
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def session(srv, user, how="imaps", clients=None, select=None):
    c = Imap(srv, how)
    if clients is not None:
        clients.append(c)
    c.login(user)
    if select:
        c.ok("SELECT", quote(select))
    return c


def imaplib_login(srv, user, how):
    if how == "imaps":
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=10)
    else:
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
        m.starttls(srv.ctx())
    m.login(user, srv.password)
    return m


def append(c, box, msg, flags=None, date=None):
    """APPEND msg (str/bytes) to box; returns the new UID."""
    if isinstance(msg, str):
        msg = msg.encode()
    parts = ["APPEND", quote(box)]
    if flags is not None:
        parts.append("(%s)" % flags)
    if date is not None:
        parts.append('"%s"' % date)
    r = c.ok(*parts, Lit(msg))
    m = re.match(r"\[APPENDUID (\d+) (\d+)\]", r.text)
    assert m, "no APPENDUID in %r\n%s" % (r.text, c.dialogue())
    return int(m.group(2))


def deliver_and_wait(srv, addr, msgs):
    """SMTP-deliver messages and wait until the index lists them all."""
    for m in msgs:
        srv.deliver(addr, m)


def index_rows(srv, addr, box="INBOX"):
    con = srv.index(addr)
    try:
        return con.execute("SELECT m.uid, m.filename, m.flags, m.size FROM messages m JOIN "
                           "mailboxes b ON b.id = m.mailbox_id WHERE b.name = ? ORDER BY m.uid",
                           (box,)).fetchall()
    finally:
        con.close()


def message_file(srv, addr, filename, box="INBOX"):
    """Path of a message file in the account's Maildir (new/ or cur/, any flags suffix)."""
    base = srv.maildir(addr)
    dirs = [base] if box == "INBOX" else [os.path.join(base, d) for d in os.listdir(base)
                                           if d.startswith(".")]
    key = os.path.basename(filename).split(":2,")[0]
    for d in dirs:
        for sub in ("cur", "new"):
            p = os.path.join(d, sub)
            if not os.path.isdir(p):
                continue
            for n in os.listdir(p):
                if n.split(":2,")[0] == key:
                    return os.path.join(p, n)
    raise AssertionError("no file for %s in %s" % (filename, dirs))
