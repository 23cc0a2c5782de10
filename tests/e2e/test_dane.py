"""DANE for outbound mail (RFC 7672, issue 12): the queue validates DNSSEC through libunbound
(`dns_trust_anchor_file`), and an MX host found through secure MX records that publishes secure
TLSA records gets mandatory TLS authenticated by them (OpenSSL's DANE), even with a certificate
no CA signed; a mismatch or a missing STARTTLS defers (4.7.5); insecure TLSA records count for
nothing.

The zone dane.test is signed here with BIND's dnssec-keygen/dnssec-signzone and served by a
local unbound as an auth-zone; its DS record is postino's trust anchor.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_dane.py
"""
import hashlib
import os
import subprocess
import tempfile

import pytest

from postino_server import Server
from queuehelp import (Dns, free_port, log_text, outbound_conf, send_token, stop_checked,
                       tls_sink, wait_for, wait_log)

IPS = {"tls": "127.0.0.31", "tls2": "127.0.0.32", "plain": "127.0.0.33", "ca": "127.0.0.34"}


def _run(*args, cwd, inp=None):
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, timeout=60,
                          input=inp).stdout


def _cert(d, name, ca=None):
    """A key + certificate for name: self-signed, or issued by ca (a (cert, key) pair)."""
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    if ca is None:
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name,
             "-addext", "subjectAltName=DNS:" + name, cwd=d)
    else:
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n" % name)
        _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", crt + ".csr", "-subj", "/CN=" + name, cwd=d)
        _run("openssl", "x509", "-req", "-in", crt + ".csr", "-CA", ca[0], "-CAkey", ca[1],
             "-CAcreateserial", "-days", "2", "-out", crt, "-extfile", ext, cwd=d)
        # the chain includes the CA: a DANE-TA(2) digest must find it there (RFC 7672 3.1.2)
        with open(crt, "a") as f, open(ca[0]) as c:
            f.write(c.read())
    return crt, key


def _spki_sha256(d, crt):
    pub = _run("openssl", "x509", "-in", crt, "-noout", "-pubkey", cwd=d)
    der = _run("openssl", "pkey", "-pubin", "-outform", "DER", cwd=d, inp=pub)
    return hashlib.sha256(der).hexdigest()


def _cert_sha256(d, crt):
    return hashlib.sha256(_run("openssl", "x509", "-in", crt, "-outform", "DER", cwd=d)).hexdigest()


def _signed_zone(d, port, certs):
    spki = _spki_sha256(d, certs["tls"][0])
    ca = _cert_sha256(d, certs["cacert"][0])
    t = "_%d._tcp" % port
    zone = [
        "$TTL 300",
        "@ IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300",
        "@ IN NS ns.dane.test.", "ns IN A 127.0.0.1",
        # DANE-EE: the key of a self-signed certificate
        "ok IN MX 10 mx1", "mx1 IN A %s" % IPS["tls"], "%s.mx1 IN TLSA 3 1 1 %s" % (t, spki),
        # the same server under a name whose TLSA record is another key
        "bad IN MX 10 mx2", "mx2 IN A %s" % IPS["tls2"], "%s.mx2 IN TLSA 3 1 1 %s" % (t, "00" * 32),
        # TLSA records, but no STARTTLS
        "notls IN MX 10 mx3", "mx3 IN A %s" % IPS["plain"], "%s.mx3 IN TLSA 3 1 1 %s" % (t, spki),
        # only PKIX-EE records, unusable for SMTP: TLS still mandatory, not authenticated
        "unusable IN MX 10 mx4", "mx4 IN A %s" % IPS["tls2"], "%s.mx4 IN TLSA 1 1 1 %s" % (t, spki),
        # DANE-TA: a chain to the test CA, naming mx5.dane.test
        "ta IN MX 10 mx5", "mx5 IN A %s" % IPS["ca"], "%s.mx5 IN TLSA 2 0 1 %s" % (t, ca),
    ]
    path = os.path.join(d, "dane.test.zone")
    with open(path, "w") as f:
        f.write("\n".join(zone) + "\n")
    for extra in (["-f", "KSK"], []):
        k = _run("dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", *extra, "dane.test", cwd=d)
        with open(path, "a") as f, open(os.path.join(d, k.decode().strip() + ".key")) as kf:
            f.write(kf.read())
    _run("dnssec-signzone", "-q", "-o", "dane.test", "-N", "unixtime", path, cwd=d)
    return path + ".signed", os.path.join(d, "dsset-dane.test.")




@pytest.fixture(scope="module")
def net():
    d = tempfile.mkdtemp(prefix="postino-dane-")
    os.chmod(d, 0o755)   # the queue runs as the workers' user and reads the trust anchor
    port = free_port(list(IPS.values()))
    certs = {"tls": _cert(d, "mx1.dane.test"), "cacert": _cert(d, "dane test CA")}
    certs["ca"] = _cert(d, "mx5.dane.test", ca=certs["cacert"])
    zone, ds = _signed_zone(d, port, certs)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    dns = Dns(["plain.test"], ["plain.test. MX 10 mx.plain.test.",
                               "mx.plain.test. A %s" % IPS["plain"],
                               # insecure TLSA records count for nothing
                               "_%d._tcp.mx.plain.test. TLSA 3 1 1 %s" % (port, "00" * 32)],
              auth_zones=[("dane.test", zone)])
    sinks = {"tls": tls_sink(IPS["tls"], port, certs["tls"]),
             "tls2": tls_sink(IPS["tls2"], port, certs["tls"]),
             "plain": tls_sink(IPS["plain"], port),
             "ca": tls_sink(IPS["ca"], port, certs["ca"])}
    yield {"dns": dns, "port": port, "ds": ds, "sinks": {k: v[1] for k, v in sinks.items()}}
    for c, _ in sinks.values():
        c.stop()
    dns.stop()


@pytest.fixture(scope="module")
def srv(net):
    conf = outbound_conf(net, "dns_trust_anchor_file = %s\n" % net["ds"],
                         connect="3s", reply="5s")
    s = Server(extra_conf=conf, users=("alice@example.test",), wait_for=("smtp", "submission"))
    yield s
    stop_checked(s)


def test_dane_ee_authenticates_a_self_signed_certificate(srv, net):
    token = send_token(srv, "u@ok.dane.test")
    assert wait_for(lambda: net["sinks"]["tls"].find(token), 20), log_text(srv)[-3000:]
    assert "event=dane-verified dest=ok.dane.test host=mx1.dane.test" in log_text(srv)


def test_dane_ta_authenticates_a_chain_to_the_named_ca(srv, net):
    token = send_token(srv, "u@ta.dane.test")
    assert wait_for(lambda: net["sinks"]["ca"].find(token), 20), log_text(srv)[-3000:]
    assert "event=dane-verified dest=ta.dane.test host=mx5.dane.test" in log_text(srv)


def test_a_certificate_matching_no_tlsa_record_defers(srv, net):
    token = send_token(srv, "u@bad.dane.test")
    assert wait_log(srv, "event=dane-failure dest=bad.dane.test host=mx2.dane.test",
                    "matches none of its TLSA records"), log_text(srv)[-3000:]
    assert not net["sinks"]["tls2"].find(token)


def test_tlsa_without_starttls_defers(srv, net):
    token = send_token(srv, "u@notls.dane.test")
    assert wait_log(srv, "event=dane-failure dest=notls.dane.test host=mx3.dane.test",
                    "does not offer STARTTLS"), log_text(srv)[-3000:]
    assert not net["sinks"]["plain"].find(token)


def test_unusable_tlsa_records_mean_tls_without_authentication(srv, net):
    token = send_token(srv, "u@unusable.dane.test")
    assert wait_for(lambda: net["sinks"]["tls2"].find(token), 20), log_text(srv)[-3000:]
    assert ("event=dane-verified dest=unusable.dane.test host=mx4.dane.test ip=%s "
            "authenticated=no" % IPS["tls2"]) in log_text(srv)


def test_insecure_tlsa_records_are_ignored(srv, net):
    token = send_token(srv, "u@plain.test")
    assert wait_for(lambda: net["sinks"]["plain"].find(token), 20), log_text(srv)[-3000:]
    assert "dest=plain.test" not in "".join(l for l in log_text(srv).splitlines(True)
                                             if "event=dane" in l)
