"""SMTP client helpers for the postino end-to-end tests (stdlib only)."""
import re
import smtplib
import socket
import ssl
import time

from conftest import HOST

CONNECT_ADDR = "127.0.0.1"


class SMTP(smtplib.SMTP):
    """smtplib.SMTP that always connects to 127.0.0.1 but keeps `host` as the TLS server
    name (SNI and certificate host name check)."""

    def __init__(self, port, server_name=HOST, timeout=20, local_hostname="client.test"):
        super().__init__(local_hostname=local_hostname, timeout=timeout)
        self.connect(server_name, port)
        self._host = server_name  # smtplib.starttls() uses it as the TLS server name

    def _get_socket(self, host, port, timeout):
        return socket.create_connection((CONNECT_ADDR, port), timeout)


class SMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, port, context, server_name=HOST, timeout=20,
                 local_hostname="client.test"):
        super().__init__(local_hostname=local_hostname, timeout=timeout, context=context)
        self.connect(server_name, port)
        self._host = server_name

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((CONNECT_ADDR, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


def message(token, from_="sender@remote.test", to="alice@example.test", subject=None,
            body=None, extra_headers=()):
    """A small RFC 5322 message with CRLF line ends, ending in CRLF, including a line that
    starts with a dot (dot-stuffing) and 8-bit text."""
    hdrs = [
        "From: %s" % from_,
        "To: %s" % to,
        "Subject: %s" % (subject or "test " + token),
        "Message-ID: <%s@client.test>" % token,
        "Date: Thu, 01 Jan 2026 00:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ] + list(extra_headers)
    if body is None:
        body = ("Hello %s\r\n.a line starting with a dot\r\n..two dots\r\n"
                "caf\u00e9 \u2013 8 bit text\r\n  trailing spaces  \r\n\r\nend\r\n" % token)
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode("utf-8")


def split_stored(data):
    """Split a stored message file into (return_path_line, [trace header blocks], rest):
    the leading Return-Path line and the leading Received: headers (with their folded
    continuation lines) that the server prepended; `rest` must equal the bytes sent."""
    lines = data.split(b"\r\n")
    assert lines[0].startswith(b"Return-Path:"), "first line is not Return-Path: %r" % lines[0]
    rp = lines[0]
    i = 1
    blocks = []
    while i < len(lines) and lines[i].lower().startswith(b"received:"):
        blk = [lines[i]]
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            blk.append(lines[i])
            i += 1
        blocks.append(b"\r\n".join(blk))
    # port 25 mail: one Authentication-Results field of ours below the Received (issue 12)
    if blocks and i < len(lines) and lines[i].lower().startswith(b"authentication-results:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    rest = b"\r\n".join(lines[i:])
    return rp, blocks, rest


def unfold(b):
    return re.sub(rb"\r\n[ \t]+", b" ", b).decode("utf-8", "replace")


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # texts after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class Raw:
    """Line-level SMTP client over a raw socket, for what smtplib cannot do."""

    def __init__(self, port, tls_context=None, server_name=HOST, timeout=15, banner=True):
        self.sock = socket.create_connection((CONNECT_ADDR, port), timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock, server_hostname=server_name)
        self.banner = self.reply() if banner else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server (buffer %r)" % self.buf)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def reply(self):
        lines = []
        while True:
            ln = self.line()
            if len(ln) < 3 or not ln[:3].isdigit():
                raise AssertionError("malformed reply line %r" % ln)
            lines.append(ln[4:].decode("utf-8", "replace"))
            if len(ln) == 3 or ln[3:4] == b" ":
                return Reply(int(ln[:3]), lines)
            if ln[3:4] != b"-":
                raise AssertionError("malformed reply line %r" % ln)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def data_body(self, msg):
        """Send msg (CRLF lines, ending in CRLF) dot-stuffed plus the final dot; returns the
        reply to the end of data."""
        assert msg.endswith(b"\r\n")
        self.send(dotstuff(msg) + b".\r\n")
        return self.reply()

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        return r

    def keywords(self, r):
        """EHLO reply -> {KEYWORD: params string}"""
        kw = {}
        for ln in r.lines[1:]:
            parts = ln.split(None, 1)
            if parts:
                kw[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
        return kw

    def starttls(self, context, server_name=HOST):
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        assert self.buf == b"", "server sent data after 220 to STARTTLS: %r" % self.buf
        self.sock = context.wrap_socket(self.sock, server_hostname=server_name)
        self.sock.settimeout(self.timeout)
        return r

    def wait_closed(self, timeout=10):
        """True if the server closes the connection within timeout (data is drained)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except socket.timeout:
            return False
        return False

    def pending(self, wait=0.3):
        """Data the server sent without being asked (within `wait` seconds)."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.settimeout(self.timeout)
        out, self.buf = self.buf, b""
        return out


def dotstuff(msg):
    out = re.sub(rb"(?m)^\.", b"..", msg)  # lines are CRLF-separated; '^' after '\n'
    return out


def auth_plain_arg(user, password):
    import base64
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
