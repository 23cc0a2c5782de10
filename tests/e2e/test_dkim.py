"""DKIM signing of outbound mail (issue 12): every message an authenticated user sends to another
server carries an RSA-2048 and an Ed25519 signature of its From: domain, made once when the
message is accepted. Verified by independent implementations: dkimpy (python3-dkim) and
OpenDKIM's opendkim-testmsg (opendkim-tools), fed the TXT records `postino dns` prints.
Also the `postino dkim` key commands and the DNS records (DKIM, DMARC p=none, SPF).
"""
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import uuid

import pytest

from postino_server import BIN, Server
from queuehelp import Dns, Sink, free_port, outbound_conf, wait_for

dkim = pytest.importorskip("dkim")

ALICE = "alice@example.test"
BOB = "bob@keyless.test"
SINK = "127.0.0.2"
RECORDS = ["r1.test. MX 10 mx1.r1.test.", "mx1.r1.test. A %s" % SINK]


@pytest.fixture(scope="module")
def net():
    dns = Dns(["r1.test"], RECORDS)
    port = free_port([SINK])
    sink = Sink(SINK, port, temp_times=1)
    yield {"dns": dns, "port": port, "sink": sink}
    sink.stop()
    dns.stop()


def cli(srv, *args, check=0, stdin=None):
    cp = subprocess.run([BIN, *args, "--data", srv.data], capture_output=True, text=True,
                        timeout=60, input=stdin)
    if check is not None:
        assert cp.returncode == check, (args, cp.returncode, cp.stdout, cp.stderr)
    return cp


@pytest.fixture(scope="module")
def srv(net):
    s = Server(extra_conf=outbound_conf(net, reply="5s"), users=(ALICE,),
               wait_for=("smtp", "submission"))
    yield s
    if s.proc.poll() is None:
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(30)
    text = log_text(s)
    s.stop()
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in text, text[-8000:]


def log_text(srv):
    with open(srv.log.name, errors="replace") as f:
        return f.read()


def submit(srv, rcpt, body, user=ALICE):
    """Submit on 587; returns the queue id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=srv.ctx())
        s.login(user, srv.password)
        s.mail(user)
        code, resp = s.rcpt(rcpt)
        assert code == 250, resp
        code, resp = s.data(body)
        assert code == 250, resp
        return resp.decode().split("message ")[1].split()[0]


def make_msg(token, sender=ALICE, to="u@r1.test", extra=b""):
    return (b"From: Alice Example <%s>\r\nTo: <%s>\r\nSubject: dkim %s\r\n"
            b"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n%s\r\n"
            b"Hello  there, %s.\r\n\r\n.leading dot and trailing space \r\n\r\n\r\n"
            % (sender.encode(), to.encode(), token.encode(), token.encode(), extra,
               token.encode()))


def received(net, token, timeout=30, srv=None):
    got = wait_for(lambda: net["sink"].handler.find(token), timeout)
    assert got, "the peer got nothing" + (log_text(srv)[-3000:] if srv else "")
    assert len(got) == 1
    return got[0][2]


def dns_records(srv, domain):
    """The TXT records `postino dns` prints: {name: joined text}, and the raw lines."""
    out = cli(srv, "dns", domain, "--ipv4", "192.0.2.25").stdout
    recs = {}
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _ttl, _cls, typ, data = line.split(None, 4)
        if typ == "TXT":
            strings = re.findall(r'"([^"]*)"', data)
            assert all(len(x) <= 255 for x in strings), line
            recs[name] = "".join(strings)
    return recs, out


def dnsfunc_for(srv, domain):
    recs, _ = dns_records(srv, domain)

    def dnsfunc(name, timeout=5):
        return recs.get(name.decode(), "").encode()
    return dnsfunc


def signatures(msg):
    """The DKIM-Signature fields of msg, unfolded, as tag dicts."""
    out = []
    for m in re.finditer(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", msg, re.M | re.S):
        text = re.sub(rb"\s+", b"", m.group(1)).decode()
        out.append(dict(t.split("=", 1) for t in text.split(";") if t))
    return out


def verify_all(srv, msg, domain="example.test"):
    """Both signatures verify with dkimpy; returns their tag dicts."""
    sigs = signatures(msg)
    assert len(sigs) == 2, msg[:3000]
    fn = dnsfunc_for(srv, domain)
    for i in range(len(sigs)):
        assert dkim.DKIM(msg).verify(idx=i, dnsfunc=fn), (i, sigs[i], msg[:3000])
    return sigs


# ---------------------------------------------------------------- signing and verifying

def test_signed_rsa_and_ed25519_verified_by_dkimpy(srv, net):
    token = uuid.uuid4().hex
    submit(srv, "u1@r1.test", make_msg(token))
    msg = received(net, token)
    sigs = verify_all(srv, msg)
    assert sorted(s["a"] for s in sigs) == ["ed25519-sha256", "rsa-sha256"]
    for s in sigs:
        assert s["c"] == "relaxed/relaxed" and s["d"] == "example.test" and s["v"] == "1"
        h = s["h"].split(":")
        assert h.count("from") == 2, h   # From oversigned
        for f in ("to", "subject", "date", "message-id", "mime-version", "content-type"):
            assert f in h, (f, h)
        assert "received" not in h
    # both selectors are published by `postino dns` and listed as signing
    recs, _ = dns_records(srv, "example.test")
    for s in sigs:
        name = "%s._domainkey.example.test." % s["s"]
        assert name in recs
        assert recs[name].startswith("v=DKIM1; k=%s; p=" % ("rsa" if s["a"] == "rsa-sha256"
                                                           else "ed25519"))
        assert re.search(r"^  %s\s.*signing" % s["s"], cli(srv, "dkim", "list").stdout, re.M)
    # a changed body or From: no longer verifies (the check is real)
    fn = dnsfunc_for(srv, "example.test")
    bad = msg.replace(b"Hello  there", b"Hello there!")
    assert not verifies(bad, 0, fn) and not verifies(bad, 1, fn)
    spoof = msg.replace(b"\r\nFrom: Alice", b"\r\nFrom: Mallory <m@evil.test>\r\nFrom: Alice")
    assert not verifies(spoof, 0, fn) and not verifies(spoof, 1, fn)
    assert verifies(msg, 0, fn) and verifies(msg, 1, fn)


def verifies(msg, idx, fn):
    try:
        return dkim.DKIM(msg).verify(idx=idx, dnsfunc=fn)
    except dkim.DKIMException:
        return False


def test_signature_survives_bare_lf_and_long_lines(srv, net):
    # BDAT keeps bare LF line ends in the spool; the queue sends them as CRLF and the signature
    # was computed over what is sent. A long folded To: (signed twice: two To: fields), long
    # lines, 8-bit text and a body larger than one read-back chunk too.
    token = uuid.uuid4().hex
    long_to = b"To: " + b",\r\n ".join(b"<r%d@r1.test>" % i for i in range(300)) + b"\r\n"
    body = (make_msg(token, extra=long_to + b"X-Long: " + b"y" * 900 + b"\r\n")
            .replace(b"\r\n", b"\n") + ("caff\u00e8 \t " * 60 + "\n").encode() * 200)
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=srv.ctx())
        s.login(ALICE, srv.password)
        s.ehlo()
        s.mail(ALICE, ["BODY=8BITMIME"])
        s.rcpt("u2@r1.test")
        s.putcmd("BDAT %d LAST" % len(body))
        s.send(body)
        code, resp = s.getreply()
        assert code == 250, resp
    verify_all(srv, received(net, token, srv=srv))


def resolv_unshare_ok():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_verified_by_opendkim(srv, net, tmp_path):
    """opendkim-testmsg resolves keys through the system resolver: it runs in a private mount
    namespace whose /etc/resolv.conf names an unbound on 127.0.0.x:53 serving the records."""
    if shutil.which("opendkim-testmsg") is None or shutil.which("unshare") is None:
        pytest.skip("opendkim-tools (opendkim-testmsg) or unshare is not installed")
    if not resolv_unshare_ok():
        pytest.skip("cannot create a mount namespace here (needs root)")
    token = uuid.uuid4().hex
    submit(srv, "u3@r1.test", make_msg(token))
    msg = received(net, token)
    recs, _ = dns_records(srv, "example.test")
    lines = []
    for name, text in recs.items():
        if "._domainkey." in name:
            # one string per 255 octets, as published
            parts = " ".join('"%s"' % text[i:i + 255] for i in range(0, len(text), 255))
            lines.append("%s TXT %s" % (name, parts))
    dns = None
    for _ in range(20):   # a free 127.0.0.x with port 53
        host = "127.0.%d.%d" % (os.getpid() % 200 + 20, uuid.uuid4().int % 200 + 20)
        try:
            dns = Dns(["example.test"], lines, host=host, port=53)
            break
        except (RuntimeError, OSError):
            continue
    assert dns is not None
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver %s\noptions timeout:2 attempts:1\n" % dns.host)

        def testmsg(data):
            script = 'mount --bind "$1" /etc/resolv.conf && exec opendkim-testmsg'
            return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(resolv)],
                                  input=data, capture_output=True, timeout=60)
        # one signature at a time (removing one does not break the other)
        blocks = re.findall(rb"DKIM-Signature:.*?\r\n(?![ \t])", msg, re.S)
        assert len(blocks) == 2
        for keep in blocks:
            one = msg
            for other in blocks:
                if other is not keep:
                    one = one.replace(other, b"")
            cp = testmsg(one)
            assert cp.returncode == 0 and not cp.stderr.strip(), (keep, cp.stdout, cp.stderr)
            # negative control: the same verifier refuses a changed body
            cp = testmsg(one.replace(b"Hello  there", b"Hello there!"))
            # (opendkim-testmsg exits EX_SOFTWARE, 70, and names the failure)
            assert cp.returncode == 70 and b"Bad signature" in cp.stderr, \
                (keep, cp.stdout, cp.stderr)
    finally:
        dns.stop()


def test_retry_sends_the_signature_made_at_acceptance(srv, net):
    """The first attempt is deferred by the peer; meanwhile the keys rotate. The retry still
    carries the signatures from the .env (old selectors, old t=), and they still verify because
    the old keys stay published until retired."""
    token = uuid.uuid4().hex
    rcpt = "temp-%s@r1.test" % token[:8]
    qid = submit(srv, rcpt, make_msg(token, to=rcpt))
    before = {s["s"] for s in signatures_of_env_after(srv, qid)}
    assert wait_for(lambda: net["sink"].handler.temp_seen.get(rcpt, 0) >= 1, 20)
    cli(srv, "queue", "hold", qid)   # no retry until the keys have rotated
    new = set(re.findall(r"created DKIM keys (\S+) \(rsa-2048\) and (\S+) \(ed25519\)",
                         cli(srv, "dkim", "new", "example.test").stdout)[0])
    assert len(new) == 2 and new.isdisjoint(before)
    cli(srv, "dkim", "rotate", "example.test")
    cli(srv, "queue", "release", qid)
    msg = received(net, token)
    sigs = verify_all(srv, msg)
    assert {s["s"] for s in sigs} == before
    assert net["sink"].handler.temp_seen[rcpt] == 2
    # a message sent now is signed with the new selectors
    token2 = uuid.uuid4().hex
    submit(srv, "u4@r1.test", make_msg(token2))
    sigs2 = verify_all(srv, received(net, token2))
    assert {s["s"] for s in sigs2} == new


def signatures_of_env_after(srv, qid):
    """The signatures stored in the queue envelope of qid (read before the retry)."""
    import base64
    path = os.path.join(srv.data, "queue", qid + ".env")
    with open(path) as f:
        env = f.read()
    line = [x for x in env.splitlines() if x.startswith("dkim ")]
    assert len(line) == 1, env
    fields = base64.b64decode(line[0][5:])
    sigs = signatures(fields)
    assert len(sigs) == 2
    show = cli(srv, "queue", "show", qid).stdout
    for s in sigs:
        assert "dkim: d=example.test s=%s" % s["s"] in show, show
    return sigs


# ---------------------------------------------------------------- domains without keys

def test_domain_without_keys_is_unsigned_until_rotated(srv, net):
    cli(srv, "domain", "add", "keyless.test")
    cli(srv, "user", "add", BOB, stdin=srv.password + "\n")
    shutil.rmtree(os.path.join(srv.data, "dkim", "keyless.test"))   # as before issue 12
    out = cli(srv, "dkim", "list", "keyless.test").stdout
    assert "no DKIM keys" in out and "postino dkim new keyless.test" in out
    token = uuid.uuid4().hex
    submit(srv, "u5@r1.test", make_msg(token, sender=BOB), user=BOB)
    assert b"DKIM-Signature" not in received(net, token)
    assert wait_for(lambda: "event=dkim-unsigned" in log_text(srv) and
                    "domain=keyless.test" in log_text(srv), 5)
    _, zone = dns_records(srv, "keyless.test")
    assert "_domainkey" not in zone and "postino dkim new keyless.test" in zone
    # a new pair is published but does not sign yet
    cli(srv, "dkim", "new", "keyless.test")
    recs, _ = dns_records(srv, "keyless.test")
    assert len([n for n in recs if "._domainkey." in n]) == 2
    token = uuid.uuid4().hex
    submit(srv, "u6@r1.test", make_msg(token, sender=BOB), user=BOB)
    assert b"DKIM-Signature" not in received(net, token)
    # rotate: signed from now on
    cli(srv, "dkim", "rotate", "keyless.test")
    token = uuid.uuid4().hex
    submit(srv, "u7@r1.test", make_msg(token, sender=BOB), user=BOB)
    sigs = verify_all(srv, received(net, token), "keyless.test")
    assert {s["d"] for s in sigs} == {"keyless.test"}


def test_local_delivery_is_not_signed(srv):
    token = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=srv.ctx())
        s.login(ALICE, srv.password)
        s.sendmail(ALICE, [ALICE], make_msg(token, to=ALICE))
    d = os.path.join(srv.maildir(ALICE), "new")
    files = wait_for(lambda: [f for f in os.listdir(d)
                              if token.encode() in open(os.path.join(d, f), "rb").read()], 5)
    assert files
    assert b"DKIM-Signature" not in open(os.path.join(d, files[0]), "rb").read()


def test_unusable_key_is_a_temporary_failure(srv, net):
    """A signing key that cannot be loaded: 451, nothing queued, the log says which key."""
    sel = [l.split()[0] for l in cli(srv, "dkim", "list", "example.test").stdout.splitlines()
           if " signing " in l and "rsa-" in l][0]
    path = os.path.join(srv.data, "dkim", "example.test", sel + ".key")
    with open(path, "rb") as f:
        good = f.read()
    queued = set(os.listdir(os.path.join(srv.data, "queue")))
    try:
        with open(path, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        token = uuid.uuid4().hex
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
            s.starttls(context=srv.ctx())
            s.login(ALICE, srv.password)
            s.mail(ALICE)
            s.rcpt("u8@r1.test")
            code, resp = s.data(make_msg(token))
        assert code == 451 and b"4.3.0" in resp, resp
        assert "DKIM key %s of example.test" % sel in log_text(srv)
        assert set(os.listdir(os.path.join(srv.data, "queue"))) == queued
        assert not net["sink"].handler.find(token)
    finally:
        with open(path, "wb") as f:
            f.write(good)


# ---------------------------------------------------------------- keys and DNS records

def test_dkim_cli_and_dns_records(srv):
    cli(srv, "domain", "add", "cli.test")
    keydir = os.path.join(srv.data, "dkim", "cli.test")
    keys = sorted(os.listdir(keydir))
    assert len([k for k in keys if k.endswith(".key")]) == 2
    for k in keys:
        if k.endswith(".key"):
            assert os.stat(os.path.join(keydir, k)).st_mode & 0o777 == 0o600
    out = cli(srv, "dkim", "list", "cli.test").stdout
    assert re.search(r"^  \d{6}r\s+rsa-2048\s+signing", out, re.M), out
    assert re.search(r"^  \d{6}e\s+ed25519\s+signing", out, re.M), out
    old = re.findall(r"^  (\S+)\s+\S+\s+signing", out, re.M)
    # DNS: both key records split at 255 octets, DMARC p=none with rua, SPF with the address
    recs, zone = dns_records(srv, "cli.test")
    dk = {n: t for n, t in recs.items() if "._domainkey." in n}
    assert set(dk) == {"%s._domainkey.cli.test." % s for s in old}
    rsa = [t for t in dk.values() if "k=rsa" in t][0]
    assert len(rsa) > 255   # so it is split into several strings
    assert re.search(r'"v=DKIM1; k=rsa; p=[^"]{237}" "[^"]+"', zone), zone
    assert recs["_dmarc.cli.test."] == "v=DMARC1; p=none; rua=mailto:postmaster@cli.test"
    assert "p=quarantine" in zone and "p=reject" in zone   # the comment says when
    assert recs["cli.test."] == "v=spf1 ip4:192.0.2.25 mx -all"
    # rotate without new keys is refused with what to do
    cp = cli(srv, "dkim", "rotate", "cli.test", check=1)
    assert "postino dkim new cli.test" in cp.stderr
    new = set(re.findall(r"created DKIM keys (\S+) \(rsa-2048\) and (\S+) \(ed25519\)",
                         cli(srv, "dkim", "new", "cli.test").stdout)[0])
    out = cli(srv, "dkim", "list", "cli.test").stdout
    assert len(re.findall(r"\snext\s", out)) == 2, out
    assert len(dns_records(srv, "cli.test")[0]) == len(recs) + 2
    # a signing key cannot be retired
    cp = cli(srv, "dkim", "retire", "cli.test", old[0], check=1)
    assert "still signs" in cp.stderr
    cli(srv, "dkim", "rotate", "cli.test")
    out = cli(srv, "dkim", "list", "cli.test").stdout
    for s in old:
        assert re.search(r"^  %s\s+\S+\s+old\s" % s, out, re.M), out
    assert set(re.findall(r"^  (\S+)\s+\S+\s+signing", out, re.M)) == new
    for s in old:
        assert "retired" in cli(srv, "dkim", "retire", "cli.test", s).stdout
        assert not os.path.exists(os.path.join(keydir, s + ".key"))
    recs2, _ = dns_records(srv, "cli.test")
    assert not any(n.startswith(s + ".") for s in old for n in recs2)
    assert len([n for n in recs2 if "._domainkey." in n]) == 2
    # bad input
    cli(srv, "dkim", "retire", "cli.test", "nosuch", check=1)
    cli(srv, "dkim", "retire", "cli.test", "../x", check=1)
    cli(srv, "dkim", "new", "not-hosted.test", check=1)
    assert "usage" in cli(srv, "dkim", "--help").stdout
