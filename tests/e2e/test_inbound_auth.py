"""Inbound mail authentication on port 25 (issue 12): DKIM verification (RFC 6376, RFC 8463),
SPF (RFC 7208), DMARC (RFC 7489) and one Authentication-Results field (RFC 8601).

Messages are signed by an independent implementation (dkimpy, python3-dkim: RSA and Ed25519),
SPF verdicts are compared with pyspf (python3-spf) on the same records, and the
Authentication-Results field is read with python3-authres. All DNS comes from a private unbound
(queuehelp.Dns) that postino's dns_servers points at.
"""
import base64
import os
import signal
import smtplib
import subprocess
import tempfile
import time
import uuid

import pytest

from postino_server import Server
from queuehelp import Dns, Sink, free_port, wait_for

dkim = pytest.importorskip("dkim")
spf = pytest.importorskip("spf")
authres = pytest.importorskip("authres")
nacl_signing = pytest.importorskip("nacl.signing")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

HOST = "mail.example.test"
ALICE = "alice@example.test"
CLIENT = "127.0.0.1"          # the address our test client connects from (SPF pass for it)
STRANGER = "127.0.0.9"        # an address no SPF record lists


def txt(name, value):
    """A local-data TXT line, split into 255-octet strings."""
    parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return "%s. TXT %s" % (name, " ".join('"%s"' % p for p in parts))


def pub_der_b64(pubkey):
    return base64.b64encode(pubkey.public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


class Keys:
    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_pem = self.rsa.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption())
        sk = nacl_signing.SigningKey.generate()
        self.ed_priv = base64.b64encode(bytes(sk))
        self.ed_pub = base64.b64encode(bytes(sk.verify_key)).decode()
        # a "huge" RSA public key (8192 bits): published, never generated (any odd modulus)
        n = int.from_bytes(os.urandom(1024), "big") | (1 << 8191) | 1
        self.huge_pub = rsa.RSAPublicNumbers(65537, n).public_key()


KEYS = Keys()


def records():
    r = [
        # DKIM keys
        txt("rsa._domainkey.signer.test", "v=DKIM1; k=rsa; p=" + pub_der_b64(KEYS.rsa.public_key())),
        txt("ed._domainkey.signer.test", "v=DKIM1; k=ed25519; p=" + KEYS.ed_pub),
        txt("huge._domainkey.signer.test", "v=DKIM1; k=rsa; p=" + pub_der_b64(KEYS.huge_pub)),
        txt("badb64._domainkey.signer.test", "v=DKIM1; k=rsa; p=MIIB!!notbase64=="),
        txt("revoked._domainkey.signer.test", "v=DKIM1; k=rsa; p="),
        txt("rsa._domainkey.reject.test", "v=DKIM1; k=rsa; p=" + pub_der_b64(KEYS.rsa.public_key())),
        # SPF
        txt("signer.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("spf-pass.test", "v=spf1 ip4:127.0.0.0/29 -all"),
        txt("spf-a.test", "v=spf1 a:host.spf-a.test/30 mx -all"),
        "host.spf-a.test. A 127.0.0.8",
        "spf-a.test. MX 10 mx.spf-a.test.",
        "mx.spf-a.test. A 127.0.0.20",
        txt("spf-include.test", "v=spf1 include:inc.spf-include.test ~all"),
        txt("inc.spf-include.test", "v=spf1 ip4:127.0.0.2 ?all"),
        txt("spf-redirect.test", "v=spf1 redirect=spf-pass.test"),
        txt("spf-exists.test", "v=spf1 exists:%{i}.%{l}.ok.spf-exists.test -all"),
        "127.0.0.1.bob.ok.spf-exists.test. A 127.0.0.2",
        txt("spf-loop.test", "v=spf1 include:spf-loop2.test -all"),
        txt("spf-loop2.test", "v=spf1 include:spf-loop.test -all"),
        txt("spf-many.test", "v=spf1 " + " ".join("a:h%d.spf-many.test" % i for i in range(11))
            + " -all"),
        txt("spf-void.test", "v=spf1 a:v1.spf-void.test a:v2.spf-void.test a:v3.spf-void.test"
            " ip4:127.0.0.1 -all"),
        txt("spf-syntax.test", "v=spf1 ip4:300.1.1.1 -all"),
        txt("spf-two.test", "v=spf1 -all"),
        txt("spf-two.test", "v=spf1 +all"),
        txt("spf-soft.test", "v=spf1 ~all"),
        txt("client.helo.test", "v=spf1 ip4:127.0.0.1 -all"),
        # DMARC
        txt("_dmarc.reject.test", "v=DMARC1; p=reject"),
        txt("reject.test", "v=spf1 -all"),
        txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine; pct=100"),
        txt("quarantine.test", "v=spf1 -all"),
        txt("_dmarc.signer.test", "v=DMARC1; p=reject; adkim=r; aspf=r"),
        txt("_dmarc.strict.test", "v=DMARC1; p=reject; aspf=s"),
        txt("strict.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("sub.strict.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("_dmarc.none.test", "v=DMARC1; p=none"),
        txt("none.test", "v=spf1 -all"),
        # where forwarded mail goes (the ARC sealing tests)
        "r1.test. MX 10 mx1.r1.test.",
        "mx1.r1.test. A 127.0.0.2",
    ]
    for i in range(11):
        r.append("h%d.spf-many.test. A 127.0.0.200" % i)
    return r


ZONES = ["signer.test", "reject.test", "quarantine.test", "strict.test", "none.test",
         "spf-pass.test", "spf-a.test", "spf-include.test", "spf-redirect.test",
         "spf-exists.test", "spf-loop.test", "spf-loop2.test", "spf-many.test", "spf-void.test",
         "spf-syntax.test", "spf-two.test", "spf-soft.test", "helo.test", "outside.test",
         "example.test", "r1.test"]


@pytest.fixture(scope="module")
def dns():
    d = Dns(ZONES, records())
    yield d
    d.stop()


@pytest.fixture(scope="module")
def sink():
    port = free_port(["127.0.0.2"])
    k = Sink("127.0.0.2", port)
    k.port = port
    yield k
    k.stop()


@pytest.fixture(scope="module")
def srv(dns, sink):
    s = Server(extra_conf="dns_servers = 127.0.0.1:%d\nremote_smtp_port = %d\n"
               "queue_retry_min = 1s\n" % (dns.port, sink.port), users=(ALICE,),
               wait_for=("smtp",))
    yield s
    if s.proc.poll() is None:
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(30)
    with open(s.log.name, errors="replace") as f:
        text = f.read()
    s.stop()
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in text, text[-8000:]


def message(frm, token, extra=b"", body=None):
    body = body if body is not None else b"Hello,\r\n\r\nthis is %s.  With  spaces   \r\n\r\n\r\n" % token.encode()
    return (b"From: Sender <" + frm.encode() + b">\r\nTo: " + ALICE.encode() +
            b"\r\nSubject: test " + token.encode() + b"\r\nDate: Sun, 06 Dec 2026 04:00:00 +0000"
            b"\r\nMessage-ID: <" + token.encode() + b"@x>\r\n" + extra + b"\r\n" + body)


def sign(msg, selector, domain="signer.test", ed=False, canon=(b"relaxed", b"relaxed"), **kw):
    key = KEYS.ed_priv if ed else KEYS.rsa_pem
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key, canonicalize=canon,
                    signature_algorithm=b"ed25519-sha256" if ed else b"rsa-sha256", **kw)
    return sig + msg


def send(srv, mail_from, msg, source=CLIENT, helo="client.helo.test"):
    """Send on port 25 from `source`; returns (code, text) of the end-of-data reply."""
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=60, local_hostname=helo,
                      source_address=(source, 0)) as s:
        s.ehlo(helo)
        code, resp = s.mail(mail_from)
        assert code == 250, resp
        code, resp = s.rcpt(ALICE)
        assert code == 250, resp
        code, resp = s.data(msg)
        return code, resp.decode()


def stored(srv, token, folder="", timeout=5):
    """The message with token in ALICE's folder, polled for up to timeout seconds; None."""
    base = srv.maildir(ALICE)
    d = os.path.join(base, folder, "new") if folder else os.path.join(base, "new")
    end = time.time() + timeout
    while True:
        if os.path.isdir(d):
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
                if token.encode() in data:
                    return data
        if time.time() >= end:
            return None
        time.sleep(0.05)


def ar_of(data):
    """Our Authentication-Results fields (unfolded) parsed with authres."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    fields, cur = [], None
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and cur is not None:
            cur += " " + line.strip()
            continue
        if cur is not None:
            fields.append(cur)
        cur = line
    if cur is not None:
        fields.append(cur)
    ars = [f for f in fields if f.lower().startswith("authentication-results:")]
    return [authres.AuthenticationResultsHeader.parse(f) for f in ars], ars


def deliver_and_parse(srv, mail_from, msg, token, **kw):
    code, text = send(srv, mail_from, msg, **kw)
    assert code == 250, text
    data = stored(srv, token)
    assert data is not None, "message %s not delivered" % token
    parsed, raw = ar_of(data)
    ours = [p for p in parsed if p.authserv_id == HOST]
    assert len(ours) == 1, raw
    return ours[0], raw, data


def results(ar, method):
    return [r for r in ar.results if r.method == method]


def tok():
    return "t" + uuid.uuid4().hex[:12]


# ---- DKIM ----

@pytest.mark.parametrize("selector,ed,canon", [
    ("rsa", False, (b"relaxed", b"relaxed")),
    ("rsa", False, (b"simple", b"simple")),
    ("rsa", False, (b"relaxed", b"simple")),
    ("ed", True, (b"relaxed", b"relaxed")),
    ("ed", True, (b"simple", b"simple")),
])
def test_dkim_pass_dkimpy_signatures(srv, selector, ed, canon):
    t = tok()
    msg = sign(message("bob@signer.test", t), selector, ed=ed, canon=canon)
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    d = results(ar, "dkim")
    assert len(d) == 1 and d[0].result == "pass", raw
    props = {p.type + "." + p.name: p.value for p in d[0].properties}
    assert props["header.d"] == "signer.test" and props["header.s"] == selector, raw
    assert props["header.a"] == ("ed25519-sha256" if ed else "rsa-sha256"), raw
    assert results(ar, "dmarc")[0].result == "pass", raw


def test_dkim_tampered_body_and_header_fail(srv):
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa")
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg + b"added line\r\n", t)
    assert results(ar, "dkim")[0].result == "fail", raw
    assert "body hash" in raw[0], raw
    t = tok()
    msg = sign(message("bob@signer.test", t), "ed", ed=True).replace(b"Subject: test", b"Subject: TEST")
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "fail", raw


def test_dkim_length_tag_extra_body_is_not_pass(srv):
    """l= leaves what was appended unsigned: the signature verifies but is not a pass."""
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa", length=True)
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg + b"Click here: http://evil\r\n", t)
    assert results(ar, "dkim")[0].result == "policy", raw
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa", length=True)
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "pass", raw


def test_dkim_hostile_signatures(srv):
    """Many signatures: only the first few are checked, each reported; huge key, bad base64,
    revoked key, unknown selector, h= naming absent fields, blanks before the colon."""
    t = tok()
    base = message("bob@signer.test", t)
    msg = sign(base, "rsa")
    for _ in range(30):
        msg = sign(msg, "rsa")
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    d = results(ar, "dkim")
    assert 1 < len(d) <= 10, raw
    assert "neutral" in [x.result for x in d], raw
    # the huge key is refused, not used
    t = tok()
    msg = sign(message("bob@signer.test", t), "huge")
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "permerror" and "too long" in raw[0], raw
    for sel in ("badb64", "revoked", "nosuchselector"):
        t = tok()
        msg = sign(message("bob@signer.test", t), sel)
        ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
        assert results(ar, "dkim")[0].result == "permerror", (sel, raw)
    # bad base64 in b= itself
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa")
    head, rest = msg.split(b"b=", 1)
    msg = head + b"b=!!!" + rest
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg.replace(b"bh=!!!", b"bh="), t)
    # a signature that cannot be decoded is a syntax error (RFC 6376 3.5), not a mismatch
    assert results(ar, "dkim")[0].result == "permerror", raw
    # h= names a field the message lacks: it contributes nothing (RFC 6376 5.4), still a pass
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa",
               include_headers=[b"from", b"subject", b"x-not-there", b"to"])
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "pass", raw
    # ... and adding that field afterwards breaks it
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa",
               include_headers=[b"from", b"subject", b"x-not-there"])
    msg = b"X-Not-There: added later\r\n" + msg
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "fail", raw
    # obsolete syntax: blanks between the field name and the colon
    t = tok()
    msg = sign(message("bob@signer.test", t), "rsa")
    msg = msg.replace(b"DKIM-Signature:", b"DKIM-Signature :", 1)
    ar, raw, _ = deliver_and_parse(srv, "bob@signer.test", msg, t)
    assert results(ar, "dkim")[0].result == "pass", raw


# ---- SPF ----

def pyspf(ip, sender, helo, port):
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = 5
    dns.resolver.default_resolver = r
    return spf.check2(i=ip, s=sender, h=helo)[0]


@pytest.mark.parametrize("sender,source", [
    ("bob@spf-pass.test", "127.0.0.1"),
    ("bob@spf-pass.test", STRANGER),
    ("bob@spf-a.test", "127.0.0.9"),
    ("bob@spf-a.test", "127.0.0.20"),
    ("bob@spf-a.test", "127.0.0.3"),
    ("bob@spf-include.test", "127.0.0.2"),
    ("bob@spf-include.test", "127.0.0.3"),
    ("bob@spf-redirect.test", "127.0.0.4"),
    ("bob@spf-exists.test", "127.0.0.1"),
    ("carl@spf-exists.test", "127.0.0.1"),
    ("bob@spf-loop.test", "127.0.0.1"),
    ("bob@spf-many.test", "127.0.0.1"),
    ("bob@spf-void.test", "127.0.0.1"),
    ("bob@spf-syntax.test", "127.0.0.1"),
    ("bob@spf-two.test", "127.0.0.1"),
    ("bob@spf-soft.test", "127.0.0.1"),
    ("bob@outside.test", "127.0.0.1"),
    ("", "127.0.0.1"),
    ("", STRANGER),
])
def test_spf_matches_pyspf(srv, dns, sender, source):
    t = tok()
    frm = sender or "someone@outside.test"
    ar, raw, _ = deliver_and_parse(srv, sender, message(frm, t), t, source=source)
    s = results(ar, "spf")
    assert len(s) == 1, raw
    expected = pyspf(source, sender, "client.helo.test", dns.port)
    assert s[0].result == expected, (sender, source, raw, expected)


# ---- DMARC ----

def test_dmarc_reject_refused_with_policy_sentence(srv):
    t = tok()
    code, text = send(srv, "bob@outside.test", message("ceo@reject.test", t))
    assert code == 550 and text.startswith("5.7.1"), text
    assert "reject.test" in text and "p=reject" in text, text
    assert stored(srv, t, timeout=0) is None   # refused in the session: nothing to wait for


def test_dmarc_reject_passes_with_aligned_dkim(srv):
    t = tok()
    msg = sign(message("ceo@reject.test", t), "rsa", domain="reject.test")
    ar, raw, _ = deliver_and_parse(srv, "bob@outside.test", msg, t)
    assert results(ar, "dmarc")[0].result == "pass", raw


def test_dmarc_quarantine_goes_to_junk(srv):
    t = tok()
    code, text = send(srv, "bob@outside.test", message("ceo@quarantine.test", t))
    assert code == 250, text
    data = stored(srv, t, folder=".Junk")
    assert data is not None, "not in Junk"
    parsed, raw = ar_of(data)
    assert results(parsed[0], "dmarc")[0].result == "fail", raw
    # one delivery, into Junk: done once it is there, so the INBOX is checked at once
    assert stored(srv, t, timeout=0) is None, "also in the INBOX"


def test_dmarc_strict_spf_alignment(srv):
    """aspf=s: an SPF pass for sub.strict.test does not align with From: strict.test."""
    t = tok()
    code, text = send(srv, "bob@sub.strict.test", message("ceo@strict.test", t))
    assert code == 550 and "strict.test" in text, text
    t = tok()
    ar, raw, _ = deliver_and_parse(srv, "bob@strict.test", message("ceo@strict.test", t), t)
    assert results(ar, "spf")[0].result == "pass" and results(ar, "dmarc")[0].result == "pass", raw


def test_dmarc_none_delivers_with_fail_result(srv):
    t = tok()
    ar, raw, _ = deliver_and_parse(srv, "bob@outside.test", message("x@none.test", t), t)
    assert results(ar, "dmarc")[0].result == "fail", raw


def test_dmarc_organisational_domain_policy(srv):
    """No _dmarc.deep.sub.reject.test: the organisational domain's record applies (PSL)."""
    t = tok()
    code, text = send(srv, "bob@outside.test", message("ceo@deep.sub.reject.test", t))
    assert code == 550 and "reject.test" in text, text


# ---- Authentication-Results hygiene ----

def test_forged_authentication_results_removed(srv):
    t = tok()
    extra = (b"Authentication-Results: " + HOST.encode() + b"; dkim=pass header.d=bank.test\r\n"
             b"Authentication-Results : " + HOST.upper().encode() + b";\r\n spf=pass\r\n"
             b"Authentication-Results: (comment) " + HOST.encode() + b"; dmarc=pass\r\n"
             b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@y\r\n")
    ar, raw, data = deliver_and_parse(srv, "bob@outside.test", message("x@outside.test", t, extra), t)
    assert b"bank.test" not in data and b"dmarc=pass\r\n" not in data, data[:1500]
    assert b"other.example; spf=pass" in data
    assert len(raw) == 2, raw   # ours and other.example's


# ---- hosted domains ----

def test_hosted_domain_in_mail_from_refused(srv):
    t = tok()
    code, text = send(srv, ALICE, message("x@outside.test", t))
    assert code == 550 and text.startswith("5.7.1"), text
    assert "submission" in text and "example.test" in text, text


def test_hosted_domain_in_from_header_refused(srv):
    t = tok()
    code, text = send(srv, "bob@outside.test", message(ALICE, t))
    assert code == 550 and "submission" in text, text
    t = tok()
    code, text = send(srv, "bob@outside.test",
                      message("x@outside.test", t).replace(b"From: Sender <x@outside.test>",
                                                           b"From: a@outside.test, " + ALICE.encode()))
    assert code == 550 and "example.test" in text, text


def test_several_from_fields_refused(srv):
    t = tok()
    code, text = send(srv, "bob@outside.test",
                      message("x@outside.test", t, b"From: other@outside.test\r\n"))
    assert code == 550 and "From:" in text, text


# ---- ARC (RFC 8617) ----

def arc_seal(msg, hop, ar_text):
    """One forwarding hop: its Authentication-Results, then dkimpy's ARC set for it (RSA:
    dkimpy's arc_sign takes PEM keys only)."""
    msg = b"Authentication-Results: " + hop + b"; " + ar_text + b"\r\n" + msg
    seal = dkim.arc_sign(msg, b"rsa", b"signer.test", KEYS.rsa_pem, hop)
    assert seal, "dkimpy made no ARC set"
    return b"".join(seal) + msg


def arc_result(ar):
    r = [x for x in ar.results if x.method == "arc"]
    assert len(r) == 1, ar
    return r[0].result


def test_arc_chain_of_two_hops_passes(srv):
    t = tok()
    msg = message("bob@outside.test", t)
    msg = arc_seal(msg, b"hop1.test", b"spf=pass smtp.mailfrom=bob@outside.test")
    msg = arc_seal(msg, b"hop2.test", b"arc=pass")
    ar, raw, _ = deliver_and_parse(srv, "list@outside.test", msg, t)
    assert arc_result(ar) == "pass", raw


def test_arc_modified_after_sealing_fails(srv):
    t = tok()
    msg = arc_seal(message("bob@outside.test", t), b"hop1.test", b"spf=pass")
    ar, raw, _ = deliver_and_parse(srv, "list@outside.test",
                                   msg.replace(b"Subject: test", b"Subject: [list] test"), t)
    assert arc_result(ar) == "fail", raw
    # an earlier hop's results altered: that seal no longer verifies
    t = tok()
    msg = arc_seal(message("bob@outside.test", t), b"hop1.test", b"spf=fail")
    msg = arc_seal(msg, b"hop2.test", b"arc=pass")
    msg = msg.replace(b"hop1.test; spf=fail", b"hop1.test; spf=pass", 1)
    ar, raw, _ = deliver_and_parse(srv, "list@outside.test", msg, t)
    assert arc_result(ar) == "fail", raw


def test_arc_none_and_broken_structure(srv):
    t = tok()
    ar, raw, _ = deliver_and_parse(srv, "bob@outside.test", message("bob@outside.test", t), t)
    assert arc_result(ar) == "none", raw
    t = tok()
    msg = b"ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=signer.test; s=rsa; b=AAAA\r\n" + \
        message("bob@outside.test", t)
    ar, raw, _ = deliver_and_parse(srv, "bob@outside.test", msg, t)
    assert arc_result(ar) == "fail", raw


def postino_txt(srv):
    """The TXT records `postino dns example.test` prints, by name."""
    import re
    out = subprocess.run([srv_bin(), "dns", "example.test", "--ipv4", "192.0.2.25", "--data",
                          srv.data], capture_output=True, text=True, check=True).stdout
    recs = {}
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _ttl, _cls, typ, data = line.split(None, 4)
        if typ == "TXT":
            recs[name.rstrip(".")] = "".join(re.findall(r'"([^"]*)"', data))
    return recs


def srv_bin():
    from postino_server import BIN
    return BIN


def forwarded(srv, sink, msg, token):
    """Send msg to fwd@example.test (an alias to a remote address); the copy the sink got."""
    subprocess.run([srv_bin(), "alias", "add", "fwd@example.test", "far@r1.test", "--data",
                    srv.data], capture_output=True, text=True)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=60,
                      local_hostname="client.helo.test") as s:
        s.sendmail("list@outside.test", ["fwd@example.test"], msg)
    got = wait_for(lambda: [m for m in sink.handler.messages if token.encode() in m[2]], 30)
    assert got, "the forwarded copy did not arrive"
    return got[0][2]


def test_arc_seal_on_forwarded_mail_verifies_with_dkimpy(srv, sink):
    recs = postino_txt(srv)
    recs["rsa._domainkey.signer.test"] = "v=DKIM1; k=rsa; p=" + pub_der_b64(KEYS.rsa.public_key())

    def dnsfunc(name, timeout=5):
        return recs.get(name.decode().rstrip("."), "").encode()
    # no chain before us: i=1, cv=none
    t = tok()
    data = forwarded(srv, sink, message("bob@outside.test", t), t)
    assert b"ARC-Seal: i=1;" in data and b"cv=none" in data, data[:3000]
    body = data.split(b"\r\n", 1)[1] if data.startswith(b"Return-Path") else data
    cv, results, why = dkim.arc_verify(body, dnsfunc=dnsfunc)
    assert cv == b"pass", (why, data[:3000])
    # a chain of one hop before us: i=2, cv=pass, and the whole chain verifies
    t = tok()
    msg = arc_seal(message("bob@outside.test", t), b"hop1.test", b"spf=pass")
    data = forwarded(srv, sink, msg, t)
    assert b"ARC-Seal: i=2;" in data and b"cv=pass" in data, data[:3000]
    body = data.split(b"\r\n", 1)[1] if data.startswith(b"Return-Path") else data
    cv, results, why = dkim.arc_verify(body, dnsfunc=dnsfunc)
    assert cv == b"pass", (why, data[:3000])


# ---- the Authentication-Results field goes into the received file in place ----

def has_tmpfile(srv):
    """Does <data>/tmp take files without a name (O_TMPFILE), as postino makes them there?"""
    try:
        os.close(os.open(os.path.join(srv.data, "tmp"), os.O_TMPFILE | os.O_RDWR, 0o600))
        return True
    except OSError:
        return False


def tmp_creates(srv, action):
    """Run action(); the names of the files created meanwhile in <data>/tmp (inotify)."""
    import ctypes
    import ctypes.util
    import struct
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        IN_CREATE = 0x100
        wd = libc.inotify_add_watch(fd, os.path.join(srv.data, "tmp").encode(), IN_CREATE)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        action()
        names, buf = [], b""
        while True:
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                break
        while len(buf) >= 16:
            _wd, mask, _cookie, n = struct.unpack("iIII", buf[:16])
            if mask & IN_CREATE:
                names.append(buf[16:16 + n].rstrip(b"\0").decode())
            buf = buf[16 + n:]
        return names
    finally:
        os.close(fd)


@pytest.mark.parametrize("forged", [0, 60])
def test_results_written_in_place_one_file_per_message(srv, sink, forged):
    """A port 25 message creates one file in <data>/tmp with the checks on, as without them
    (one without a name, O_TMPFILE, where the file system has it):
    the Authentication-Results field is written into the received file, whose body moves by
    the difference (a second file, created and deleted for every message, made ext4 without
    a journal scan every recently deleted inode on each new file: half the throughput of the
    checks under load, bench/smtp-ingest). The body is larger than the 64 KB pieces it moves
    in; the header section grows by our field, or shrinks when 60 forged fields claiming our
    authserv-id go. The stored copy and the copy forwarded by the queue (which checks the
    CRC-32 of the file) are the message as sent, with our field and without the forged ones."""
    t = tok()
    body = b"".join(b"line %06d of a long body, %s\r\n" % (i, t.encode()) for i in range(6000))
    extra = b"".join(b"Authentication-Results: " + HOST.encode() + b"; dkim=pass header.d=bank"
                     b"%03d.test (forged, a long comment to make the header section shrink)\r\n" % i
                     for i in range(forged))
    msg = sign(message("bob@signer.test", t, body=body), "rsa")
    sent = msg.replace(b"\r\nSubject:", b"\r\n" + extra + b"Subject:", 1) if forged else msg
    box = {}
    names = tmp_creates(srv, lambda: box.update(r=send(srv, "bob@signer.test", sent)))
    assert box["r"][0] == 250, box["r"]
    # the received file has no name where the file system offers O_TMPFILE (inotify sees no
    # create then), else it is the one in.* file; a second file for the rewrite would have one
    assert len([n for n in names if n.startswith("in.")]) == (0 if has_tmpfile(srv) else 1), names
    data = stored(srv, t)
    assert data is not None
    parsed, raw = ar_of(data)
    ours = [p for p in parsed if p.authserv_id == HOST]
    assert len(ours) == 1 and results(ours[0], "dkim")[0].result == "pass", raw
    assert b"forged" not in data
    # trace, our field, then the message as sent without the forged fields
    assert data.endswith(msg), data[-300:]
    assert data.split(b"\r\nAuthentication-Results: ", 1)[1].split(b"\r\n\r\n", 1)[1] == body
    # forwarded: the queue sends it only when size and CRC-32 match the envelope
    t2 = tok()
    msg2 = sign(message("bob@signer.test", t2, body=body.replace(t.encode(), t2.encode())), "rsa")
    sent2 = msg2.replace(b"\r\nSubject:", b"\r\n" + extra + b"Subject:", 1) if forged else msg2
    got = forwarded(srv, sink, sent2, t2)
    assert got.endswith(msg2) and b"forged" not in got, got[-300:]
