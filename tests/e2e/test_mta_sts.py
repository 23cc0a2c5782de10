"""MTA-STS for outbound mail (RFC 8461, issue 12): a domain's policy, fetched over HTTPS with a
verified certificate, makes the queue use only the listed MX hosts over TLS verified for their
names; enforce defers (4.7.5) instead of delivering without it, testing delivers and logs.

The test domains resolve through a local unbound; the policy web server (Python's http.server
over TLS) and the MX sinks (aiosmtpd, with and without STARTTLS) run on 127.0.0.x; a test CA
signs their certificates and postino trusts it through `tls_ca_file`.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_mta_sts.py
"""
import email
import email.policy
import gzip
import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading

import pytest

from postino_server import Server
from queuehelp import (Dns, free_port, log_text, outbound_conf, send_token, stop_checked,
                       tls_sink, wait_for, wait_log)

IP_TLS, IP_PLAIN, IP_WRONGCERT = "127.0.0.21", "127.0.0.22", "127.0.0.23"
GOOD_NAMES = ["mx.enf.test", "mx.testing.test", "mx.cache.test"]

ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: %s\r\nmax_age: 86400\r\n"
POLICIES = {
    "enf.test": ENFORCE % "mx.enf.test",
    "enfplain.test": ENFORCE % "mx.enfplain.test",
    "enfmx.test": ENFORCE % "*.good.test",
    "enfcert.test": ENFORCE % "mx.enfcert.test",
    "cache.test": ENFORCE % "mx.cache.test",
    "testing.test": "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n",
    "redirect.test": None,    # answers 301: not followed, no policy
}
DOMAINS = list(POLICIES) + ["nosts.test"]
RECORDS = []
for d in DOMAINS:
    RECORDS.append("%s. MX 10 mx.%s." % (d, d))
    RECORDS.append("mta-sts.%s. A 127.0.0.20" % d)
    RECORDS.append('_mta-sts.%s. TXT "v=STSv1; id=%s1"' % (d, d.split(".")[0]))
RECORDS = [r for r in RECORDS if not r.startswith("_mta-sts.nosts.")]
RECORDS += [
    "mx.enf.test. A %s" % IP_TLS, "mx.cache.test. A %s" % IP_TLS,
    "mx.testing.test. A %s" % IP_PLAIN, "mx.enfplain.test. A %s" % IP_PLAIN,
    "mx.enfmx.test. A %s" % IP_TLS,          # not *.good.test: the policy does not list it
    "mx.enfcert.test. A %s" % IP_WRONGCERT,  # its certificate names another host
    "mx.nosts.test. A %s" % IP_PLAIN, "mx.redirect.test. A %s" % IP_PLAIN,
    # TLS reports (RFC 8460): two domains ask for them, by mail to reports.test
    '_smtp._tls.enf.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"',
    '_smtp._tls.enfplain.test. TXT "v=TLSRPTv1;rua=https://r.test/x,mailto:tlsrpt@reports.test"',
    "reports.test. MX 10 mx.reports.test.", "mx.reports.test. A %s" % IP_PLAIN,
]


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _pki(d):
    """A CA, one certificate for every mta-sts.* name and the good MX names, one for a stranger."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sts test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    out = {}
    for name, sans in (("good", ["mta-sts.%s" % x for x in DOMAINS] + GOOD_NAMES),
                       ("stranger", ["mx.stranger.test"])):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" %
                    ",".join("DNS:" + s for s in sans))
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + sans[0], cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext",
                 cwd=d)
        out[name] = (os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
    out["ca"] = os.path.join(d, "ca.pem")
    return out


class PolicyServer:
    """HTTPS on 127.0.0.20:port serving /.well-known/mta-sts.txt by Host; counts requests."""

    def __init__(self, cert, port):
        self.requests = {}
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = self.headers.get("Host", "").split(":")[0]
                dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
                owner.requests[dom] = owner.requests.get(dom, 0) + 1
                if self.path != "/.well-known/mta-sts.txt" or dom not in POLICIES:
                    self.send_error(404)
                    return
                body = POLICIES[dom]
                if body is None:
                    self.send_response(301)
                    self.send_header("Location", "https://elsewhere.test/")
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.20", port), H)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()




@pytest.fixture(scope="module")
def net():
    d = tempfile.mkdtemp(prefix="postino-sts-")
    os.chmod(d, 0o755)   # the queue runs as the workers' user and reads the CA
    pki = _pki(d)
    dns = Dns(DOMAINS + ["good.test", "reports.test"], RECORDS)
    https_port = free_port(["127.0.0.20"])
    web = PolicyServer(pki["good"], https_port)
    port = free_port([IP_TLS, IP_PLAIN, IP_WRONGCERT])
    sinks = {"tls": tls_sink(IP_TLS, port, pki["good"]), "plain": tls_sink(IP_PLAIN, port),
             "wrongcert": tls_sink(IP_WRONGCERT, port, pki["stranger"])}
    yield {"dns": dns, "port": port, "https_port": https_port, "web": web, "pki": pki,
           "sinks": {k: v[1] for k, v in sinks.items()}}
    for c, _ in sinks.values():
        c.stop()
    web.stop()
    dns.stop()


@pytest.fixture(scope="module")
def srv(net):
    conf = outbound_conf(net, "tls_ca_file = %s\nmta_sts_port = %d\n"
                         % (net["pki"]["ca"], net["https_port"]),
                         connect="3s", reply="5s")
    s = Server(extra_conf=conf, users=("alice@example.test",), wait_for=("smtp", "submission"))
    yield s
    stop_checked(s)


def test_enforce_delivers_over_verified_tls(srv, net):
    token = send_token(srv, "u@enf.test")
    got = wait_for(lambda: net["sinks"]["tls"].find(token), 20)
    assert got, log_text(srv)[-3000:]
    assert "event=mta-sts-policy domain=enf.test id=enf1 mode=enforce" in log_text(srv)
    assert "event=mta-sts-failure dest=enf.test" not in log_text(srv)


def test_enforce_defers_when_the_mx_has_no_starttls(srv, net):
    token = send_token(srv, "u@enfplain.test")
    assert wait_log(srv, "event=mta-sts-failure dest=enfplain.test",
                    "result=starttls-not-supported mode=enforce"), log_text(srv)[-3000:]
    assert not net["sinks"]["plain"].find(token), "delivered without TLS despite enforce"
    assert wait_log(srv, "4.7.5 the MTA-STS policy of enfplain.test requires TLS")


def test_enforce_skips_an_mx_the_policy_does_not_list(srv, net):
    token = send_token(srv, "u@enfmx.test")
    assert wait_log(srv, "event=mta-sts-failure dest=enfmx.test host=mx.enfmx.test "
                    "result=validation-failure mode=enforce"), log_text(srv)[-3000:]
    assert wait_log(srv, "does not list its MX host mx.enfmx.test (it lists *.good.test)")
    assert not net["sinks"]["tls"].find(token)


def test_enforce_refuses_a_certificate_for_another_name(srv, net):
    token = send_token(srv, "u@enfcert.test")
    assert wait_log(srv, "event=mta-sts-failure dest=enfcert.test",
                    "result=certificate-host-mismatch mode=enforce"), log_text(srv)[-3000:]
    assert not net["sinks"]["wrongcert"].find(token)


def test_testing_mode_delivers_and_reports(srv, net):
    token = send_token(srv, "u@testing.test")
    assert wait_for(lambda: net["sinks"]["plain"].find(token), 20), log_text(srv)[-3000:]
    assert ("event=mta-sts-failure dest=testing.test host=mx.testing.test ip=%s "
            "result=starttls-not-supported mode=testing" % IP_PLAIN) in log_text(srv)


def test_no_policy_stays_opportunistic(srv, net):
    for rcpt in ("u@nosts.test", "u@redirect.test"):
        token = send_token(srv, rcpt)
        assert wait_for(lambda: net["sinks"]["plain"].find(token), 20), log_text(srv)[-3000:]
    text = log_text(srv)
    assert "event=mta-sts-policy domain=nosts.test" not in text
    assert "domain=redirect.test result=sts-policy-fetch-error" in text
    assert "HTTP 301" in text


def test_policy_is_cached_until_its_id_changes(srv, net):
    for _ in range(2):
        token = send_token(srv, "u@cache.test")
        assert wait_for(lambda: net["sinks"]["tls"].find(token), 20), log_text(srv)[-3000:]
    assert net["web"].requests.get("cache.test") == 1, net["web"].requests
    path = os.path.join(srv.data, "queue", "mta-sts", "cache.test")
    with open(path) as f:
        cached = f.read()
    assert cached.startswith("id cache1\n") and "mode: enforce" in cached, cached


def _reports(sink):
    out = {}
    with sink.lock:
        msgs = list(sink.messages)
    for mail_from, rcpts, content, _ in msgs:
        if rcpts != ["tlsrpt@reports.test"]:
            continue
        m = email.message_from_bytes(content, policy=email.policy.default)
        assert mail_from == "<>", mail_from   # from the null sender: no bounce loops
        assert m.get_content_type() == "multipart/report"
        assert m.get_param("report-type") == "tlsrpt"
        att = [p for p in m.iter_attachments()
               if p.get_content_type() == "application/tlsrpt+gzip"]
        assert len(att) == 1
        name = att[0].get_filename()
        rpt = json.loads(gzip.decompress(att[0].get_payload(decode=True)))
        out[m["TLS-Report-Domain"]] = (m, name, rpt)
    return out


def test_tls_reports_go_to_the_domains_that_ask(srv, net):
    """RFC 8460: `postino queue tls-reports` sends today's reports now; each domain with a
    TLSRPT record gets one gzip'd JSON report of its sessions, the others none."""
    from postino_server import BIN
    cp = subprocess.run([BIN, "queue", "tls-reports", "--data", srv.data], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    sink = net["sinks"]["plain"]
    got = wait_for(lambda: len(_reports(sink)) >= 2 and _reports(sink), 30)
    assert got, log_text(srv)[-4000:]
    assert set(got) == {"enf.test", "enfplain.test"}, set(got)   # testing.test asked for none
    m, name, rpt = got["enf.test"]
    assert m["TLS-Report-Submitter"] == "mail.example.test"
    assert name.startswith("mail.example.test!enf.test!") and name.endswith(".json.gz"), name
    pol = rpt["policies"][0]
    assert pol["policy"]["policy-type"] == "sts"
    assert pol["policy"]["policy-domain"] == "enf.test"
    assert "mode: enforce" in pol["policy"]["policy-string"]
    assert pol["policy"]["mx-host"] == ["mx.enf.test"]
    assert pol["summary"]["total-successful-session-count"] >= 1
    assert pol["summary"]["total-failure-session-count"] == 0
    assert rpt["organization-name"] == "mail.example.test" and rpt["report-id"]
    assert rpt["date-range"]["start-datetime"].endswith("T00:00:00Z")
    _, _, bad = got["enfplain.test"]
    pol = bad["policies"][0]
    assert pol["summary"]["total-successful-session-count"] == 0
    assert pol["summary"]["total-failure-session-count"] >= 1
    d = pol["failure-details"][0]
    assert d["result-type"] == "starttls-not-supported"
    assert d["receiving-mx-hostname"] == "mx.enfplain.test" and d["receiving-ip"] == IP_PLAIN
    assert d["failed-session-count"] == pol["summary"]["total-failure-session-count"]
