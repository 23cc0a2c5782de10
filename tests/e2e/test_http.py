"""HTTP(S) listener: client autoconfiguration (Thunderbird autoconfig, Microsoft Autodiscover
POX and v2 JSON, Apple profiles), the /setup page with its QR code, MTA-STS, `postino dns`, and
the bounds of the HTTP/1.1 server (431, 414, 413, 404, 405, keep-alive, pipelining).

Real clients: curl, Python http.client with the test CA, headless Chromium, zbarimg,
rsvg-convert, openssl cms, named-checkzone.
"""
import http.client
import json
import os
import plistlib
import re
import shutil
import socket
import ssl
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from conftest import DOMAIN, HOST, OTHER_DOMAIN, _openssl, finish_server, postino, run, start_server

AC_NAMES = ("autoconfig.example.test", "autodiscover.example.test", "mta-sts.example.test")
OTHER_IMAP, OTHER_SMTP = "imap.other.test", "smtp.other.test"
ADDR = "bob@example.test"
AD_REQ = ('<?xml version="1.0" encoding="utf-8"?>\r\n'
          '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
          'requestschema/2006"><Request><EMailAddress>%s</EMailAddress>'
          '<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/'
          'responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>')
AD_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip("%s is not installed (scripts/deps.sh --test installs it)" % tool)


@pytest.fixture(scope="module")
def srv(workdir, pki):
    """A server with a second certificate (autoconfig/autodiscover/mta-sts names, chosen by
    SNI) and per-domain server names for other.test."""
    d = os.path.join(workdir, "pki-http")
    os.makedirs(d, exist_ok=True)
    key, cert = os.path.join(d, "ac.key"), os.path.join(d, "ac.pem")
    with open(cert + ".ext", "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,emailProtection\n"
                % ",".join("DNS:" + n for n in AC_NAMES))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             key, "-out", cert + ".csr", "-subj", "/CN=autoconfig.example.test", cwd=d)
    _openssl("x509", "-req", "-in", cert + ".csr", "-CA", pki["ca_cert"], "-CAkey", pki["ca_key"],
             "-CAcreateserial", "-days", "30", "-out", cert, "-extfile", cert + ".ext", cwd=d)
    conf = "".join("tls_host = %s %s %s\n" % (n, cert, key) for n in AC_NAMES)
    conf += "domain_host = %s imap=%s smtp=%s\n" % (OTHER_DOMAIN, OTHER_IMAP, OTHER_SMTP)
    conf += "http.command_timeout = 2s\n"   # port 80 only: quick request/idle timeouts
    s = start_server(os.path.join(workdir, "http"), pki, extra_conf=conf)
    yield s
    finish_server(s)


class _Conn(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI and certificate check for `host`."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def conn(srv, tls, host=HOST):
    if tls:
        return _Conn(host, srv.ports["https"], context=srv.ssl_context(), timeout=10)
    c = http.client.HTTPConnection("127.0.0.1", srv.ports["http"], timeout=10)
    return c


def fetch(srv, path, tls=False, host=HOST, method="GET", body=None, headers=None, sni=None):
    """One request with Python's http.client: (status, headers, body bytes). sni: the TLS
    server name when it differs from the Host header."""
    c = conn(srv, tls, sni or host)
    h = {"Host": host}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r, data


def curl(srv, path, tls=False, host=HOST, args=()):
    """The same with curl: (status, body bytes)."""
    need("curl")
    port = srv.ports["https" if tls else "http"]
    url = "%s://%s:%d%s" % ("https" if tls else "http", host, port, path)
    cp = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve",
                         "%s:%d:127.0.0.1" % (host, port), "--cacert", srv.ca, "-w",
                         "\n%{http_code}", *args, url], capture_output=True, timeout=20)
    assert cp.returncode == 0, cp.stderr.decode()
    body, _, code = cp.stdout.rpartition(b"\n")
    return int(code), body


def both(srv, path, tls, host=HOST):
    """Fetch with curl and with Python; both must agree. Returns (status, body)."""
    st1, _, b1 = fetch(srv, path, tls, host)
    st2, b2 = curl(srv, path, tls, host)
    assert st1 == st2
    return st1, b1 if st1 != 200 else b2


# ---------------------------------------------------------------- Thunderbird autoconfig

def check_autoconfig(srv, xml, user, domain=DOMAIN, imap_host=HOST, smtp_host=HOST):
    root = ET.fromstring(xml)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    prov = root.find("emailProvider")
    assert prov.get("id") == domain and prov.findtext("domain") == domain
    inc = [(s.get("type"), s.findtext("hostname"), int(s.findtext("port")),
            s.findtext("socketType"), s.findtext("username"), s.findtext("authentication"))
           for s in prov.findall("incomingServer")]
    p = srv.ports
    assert inc == [("imap", imap_host, p["imaps"], "SSL", user, "password-cleartext"),
                   ("imap", imap_host, p["imap"], "STARTTLS", user, "password-cleartext"),
                   ("pop3", HOST, p["pop3s"], "SSL", user, "password-cleartext"),
                   ("pop3", HOST, p["pop3"], "STARTTLS", user, "password-cleartext")]
    out = [(s.get("type"), s.findtext("hostname"), int(s.findtext("port")),
            s.findtext("socketType"), s.findtext("username"))
           for s in prov.findall("outgoingServer")]
    assert out == [("smtp", smtp_host, p["submissions"], "SSL", user),
                   ("smtp", smtp_host, p["submission"], "STARTTLS", user)]


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("path", ["/mail/config-v1.1.xml",
                                  "/.well-known/autoconfig/mail/config-v1.1.xml"])
def test_autoconfig(srv, tls, path):
    st, body = both(srv, path + "?emailaddress=" + urllib.parse.quote(ADDR), tls)
    assert st == 200
    check_autoconfig(srv, body, ADDR)
    # without an address: the domain from Host autoconfig.<domain>, the placeholder as user
    st, body = both(srv, path, tls, host="autoconfig.example.test")
    assert st == 200
    check_autoconfig(srv, body, "%EMAILADDRESS%")


def test_autoconfig_per_domain_hosts_and_404(srv):
    st, _, body = fetch(srv, "/mail/config-v1.1.xml?emailaddress=dave%40other.test")
    assert st == 200
    check_autoconfig(srv, body, "dave@other.test", OTHER_DOMAIN, OTHER_IMAP, OTHER_SMTP)
    st, _, _ = fetch(srv, "/mail/config-v1.1.xml?emailaddress=x%40not-hosted.test")
    assert st == 404
    st, _, _ = fetch(srv, "/mail/config-v1.1.xml", host="autoconfig.not-hosted.test")
    assert st == 404
    st, _, _ = fetch(srv, "/mail/config-v1.1.xml?emailaddress=%3Cscript%3E%40example.test")
    assert st == 400


def test_autoconfig_escapes_request_text(srv):
    addr = "o'neil&co@example.test"   # both are atext (RFC 5322), both need XML escaping
    st, _, body = fetch(srv, "/mail/config-v1.1.xml?emailaddress=" + urllib.parse.quote(addr))
    assert st == 200
    assert b"&amp;" in body and b"&#39;" in body and b"o'neil&co" not in body
    check_autoconfig(srv, body, addr)


# ---------------------------------------------------------------- Microsoft Autodiscover

def check_pox(srv, xml, addr):
    root = ET.fromstring(xml)
    assert root.tag == "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}Autodiscover"
    acct = root.find(AD_NS + "Response/" + AD_NS + "Account")
    assert acct.findtext(AD_NS + "AccountType") == "email"
    assert acct.findtext(AD_NS + "Action") == "settings"
    got = [(p.findtext(AD_NS + "Type"), p.findtext(AD_NS + "Server"), int(p.findtext(AD_NS + "Port")),
            p.findtext(AD_NS + "Encryption"), p.findtext(AD_NS + "SSL"),
            p.findtext(AD_NS + "LoginName"), p.findtext(AD_NS + "SPA"),
            p.findtext(AD_NS + "AuthRequired"))
           for p in acct.findall(AD_NS + "Protocol")]
    p = srv.ports
    assert got == [("IMAP", HOST, p["imaps"], "SSL", "on", addr, "off", "on"),
                   ("POP3", HOST, p["pop3s"], "SSL", "on", addr, "off", "on"),
                   ("SMTP", HOST, p["submissions"], "SSL", "on", addr, "off", "on"),
                   ("IMAP", HOST, p["imap"], "TLS", "on", addr, "off", "on"),
                   ("POP3", HOST, p["pop3"], "TLS", "on", addr, "off", "on"),
                   ("SMTP", HOST, p["submission"], "TLS", "on", addr, "off", "on")]


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml",
                                  "/Autodiscover/Autodiscover.xml",
                                  "/AutoDiscover/AutoDiscover.xml"])
def test_autodiscover_pox(srv, tls, path):
    body = AD_REQ % ADDR
    host = "autodiscover.example.test"
    st, r, data = fetch(srv, path, tls, host, "POST", body.encode(),
                        {"Content-Type": "text/xml; charset=utf-8"})
    assert st == 200 and r.getheader("Content-Type").startswith("application/xml")
    check_pox(srv, data, ADDR)
    st, data = curl(srv, path, tls, host, ("-X", "POST", "-H", "Content-Type: text/xml",
                                           "--data-binary", body))
    assert st == 200
    check_pox(srv, data, ADDR)


def test_autodiscover_errors(srv):
    st, r, _ = fetch(srv, "/autodiscover/autodiscover.xml")
    assert st == 405 and r.getheader("Allow") == "POST"
    st, _, data = fetch(srv, "/autodiscover/autodiscover.xml", method="POST", body=b"<nothing/>")
    assert st == 400
    assert ET.fromstring(data).find(".//{*}ErrorCode").text == "600"
    st, _, _ = fetch(srv, "/autodiscover/autodiscover.xml", method="POST",
                     body=(AD_REQ % "x@not-hosted.test").encode())
    assert st == 404
    # Exchange ActiveSync clients ask for the mobilesync schema: told it is not offered
    mobile = (AD_REQ % ADDR).replace("outlook/responseschema/2006a", "mobilesync/responseschema/2006")
    st, _, data = fetch(srv, "/autodiscover/autodiscover.xml", method="POST", body=mobile.encode())
    assert st == 404 and b"ActiveSync is not offered" in data


@pytest.mark.parametrize("tls", [False, True])
def test_autodiscover_v2_json(srv, tls):
    want = {"Protocol": "AutodiscoverV1",
            "Url": "https://autodiscover.example.test:%d/autodiscover/autodiscover.xml"
                   % srv.ports["https"]}
    for path in ("/autodiscover/autodiscover.json?Email=%s&Protocol=AutodiscoverV1" % ADDR,
                 "/autodiscover/autodiscover.json/v1.0/%s?Protocol=AutodiscoverV1" % ADDR,
                 "/Autodiscover/Autodiscover.json/v1.0/%s?Protocol=autodiscoverv1&RedirectCount=1"
                 % urllib.parse.quote(ADDR)):
        st, data = both(srv, path, tls, host="autodiscover.example.test")
        assert st == 200 and json.loads(data) == want
    # what Outlook gets for protocols this server does not offer
    for proto in ("ActiveSync", "Ews", "Rest"):
        st, r, data = fetch(srv, "/autodiscover/autodiscover.json/v1.0/%s?Protocol=%s"
                            % (ADDR, proto), tls)
        assert st == 404 and r.getheader("Content-Type").startswith("application/json")
        assert json.loads(data)["ErrorCode"] == "ProtocolNotSupported"
    st, _, data = fetch(srv, "/autodiscover/autodiscover.json?Email=%s&Protocol=Bogus" % ADDR, tls)
    assert st == 400 and json.loads(data)["ErrorCode"] == "InvalidProtocol"
    st, _, data = fetch(srv, "/autodiscover/autodiscover.json?Email=%s" % ADDR, tls)
    assert st == 400 and json.loads(data)["ErrorCode"] == "InvalidProtocol"
    st, _, _ = fetch(srv, "/autodiscover/autodiscover.json?Email=a@nothosted.test"
                          "&Protocol=AutodiscoverV1", tls)
    assert st == 404


# ---------------------------------------------------------------- Apple profile

def verify_profile(srv, der, tmp_path, purpose_any):
    f = tmp_path / "p.der"
    f.write_bytes(der)
    signer = tmp_path / "signer.pem"
    args = ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(f), "-CAfile", srv.ca,
            "-signer", str(signer)]
    if purpose_any:   # the main test certificate is for TLS servers only (EKU serverAuth)
        args += ["-purpose", "any"]
    cp = subprocess.run(args, capture_output=True, timeout=20)
    assert cp.returncode == 0, cp.stderr.decode()
    assert b"Verification successful" in cp.stderr
    subj = run(["openssl", "x509", "-in", str(signer), "-noout", "-subject"]).stdout
    return plistlib.loads(cp.stdout), subj


@pytest.mark.parametrize("tls", [False, True])
def test_mobileconfig(srv, tls, tmp_path):
    st, r, der = fetch(srv, "/mail.mobileconfig?email=" + urllib.parse.quote(ADDR), tls)
    assert st == 200
    assert r.getheader("Content-Type") == "application/x-apple-aspen-config"
    pl, subj = verify_profile(srv, der, tmp_path, True)
    assert "CN = " + HOST in subj
    assert pl["PayloadType"] == "Configuration" and pl["PayloadVersion"] == 1
    (acct,) = pl["PayloadContent"]
    p = srv.ports
    assert acct["PayloadType"] == "com.apple.mail.managed"
    assert acct["EmailAccountType"] == "EmailTypeIMAP"
    assert acct["EmailAddress"] == ADDR
    assert acct["IncomingMailServerHostName"] == HOST
    assert acct["IncomingMailServerPortNumber"] == p["imaps"]
    assert acct["IncomingMailServerUseSSL"] is True
    assert acct["IncomingMailServerUsername"] == ADDR
    assert acct["OutgoingMailServerHostName"] == HOST
    assert acct["OutgoingMailServerPortNumber"] == p["submissions"]
    assert acct["OutgoingMailServerUseSSL"] is True
    assert acct["OutgoingMailServerUsername"] == ADDR
    assert acct["IncomingMailServerAuthentication"] == "EmailAuthPassword"
    assert not any("Password" in k and k != "OutgoingPasswordSameAsIncomingPassword"
                   for k in acct), "no password may be in the profile"
    uuids = {pl["PayloadUUID"], acct["PayloadUUID"]}
    assert len(uuids) == 2
    for u in uuids:
        assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}", u)
    # a second download gets fresh UUIDs; curl sees the same signed profile
    st, der2 = curl(srv, "/mail.mobileconfig?email=" + ADDR, tls)
    assert st == 200
    pl2, _ = verify_profile(srv, der2, tmp_path, True)
    assert {pl2["PayloadUUID"], pl2["PayloadContent"][0]["PayloadUUID"]}.isdisjoint(uuids)


def test_mobileconfig_signed_by_requested_host(srv, tmp_path):
    """The certificate of the host asked for (the SNI table) signs the profile."""
    st, _, der = fetch(srv, "/mail.mobileconfig?email=" + ADDR, True, host="autoconfig.example.test")
    assert st == 200
    pl, subj = verify_profile(srv, der, tmp_path, False)
    assert "CN = autoconfig.example.test" in subj
    assert pl["PayloadContent"][0]["EmailAddress"] == ADDR
    assert fetch(srv, "/mail.mobileconfig", True)[0] == 400
    assert fetch(srv, "/mail.mobileconfig?email=a@not-hosted.test", True)[0] == 404


# ---------------------------------------------------------------- MTA-STS and DNS

def test_mta_sts_policy(srv):
    st, r, body = fetch(srv, "/.well-known/mta-sts.txt", True, host="mta-sts.example.test")
    assert st == 200 and r.getheader("Content-Type").startswith("text/plain")
    lines = body.decode().split("\r\n")
    assert lines[:4] == ["version: STSv1", "mode: enforce", "mx: " + HOST, "max_age: 604800"]
    st, body = curl(srv, "/.well-known/mta-sts.txt", True, host="mta-sts.example.test")
    assert st == 200 and body.startswith(b"version: STSv1\r\n")
    assert fetch(srv, "/.well-known/mta-sts.txt", False, host="mta-sts.example.test")[0] == 404
    assert fetch(srv, "/.well-known/mta-sts.txt", True, host="mta-sts.not-hosted.test",
                 sni=HOST)[0] == 404


def test_dns_records(srv, tmp_path):
    need("named-checkzone")
    out = postino("dns", DOMAIN, "--data", srv.data, "--ipv4", "192.0.2.25").stdout
    zone = tmp_path / "zone"
    zone.write_text("$TTL 3600\n%s. IN SOA ns1.%s. hostmaster.%s. 1 7200 3600 1209600 3600\n"
                    "%s. IN NS ns1.%s.\nns1.%s. IN A 192.0.2.53\n" % ((DOMAIN,) * 6) + out)
    cp = run(["named-checkzone", "-k", "fail", "-m", "fail", "-M", "fail", "-S", "fail", DOMAIN,
              str(zone)], check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr + out
    recs = {}
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, ttl, cls, typ, data = line.split(None, 4)
        recs.setdefault((name, typ), []).append(data)
    d = DOMAIN + "."
    p = srv.ports
    assert recs[(d, "MX")] == ["10 %s." % HOST]
    assert recs[(HOST + ".", "A")] == ["192.0.2.25"]
    # SPF lists the sending address; DMARC starts at p=none with reports to a hosted address
    assert recs[(d, "TXT")] == ['"v=spf1 ip4:192.0.2.25 mx -all"']
    assert recs[("_dmarc." + d, "TXT")] == ['"v=DMARC1; p=none; rua=mailto:postmaster@%s"'
                                             % DOMAIN]
    # the DKIM keys `domain add` made: RSA (split into 255-octet strings) and Ed25519
    dk = {n: v[0] for (n, t), v in recs.items() if t == "TXT" and "._domainkey." in n}
    assert len(dk) == 2, out
    rsa = [v for v in dk.values() if "k=rsa" in v][0]
    strings = re.findall(r'"([^"]*)"', rsa)
    assert len(strings) == 2 and len(strings[0]) == 255 and strings[0].startswith("v=DKIM1; ")
    assert [v for v in dk.values() if re.fullmatch(r'"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="',
                                                    v)]
    assert re.fullmatch(r'"v=STSv1; id=[0-9a-f]{16}"', recs[("_mta-sts." + d, "TXT")][0])
    assert recs[("mta-sts." + d, "CNAME")] == [HOST + "."]
    assert recs[("_smtp._tls." + d, "TXT")][0].startswith('"v=TLSRPTv1; rua=mailto:')
    assert recs[("_submissions._tcp." + d, "SRV")] == ["0 1 %d %s." % (p["submissions"], HOST)]
    assert recs[("_imaps._tcp." + d, "SRV")] == ["0 1 %d %s." % (p["imaps"], HOST)]
    assert recs[("_pop3s._tcp." + d, "SRV")] == ["0 1 %d %s." % (p["pop3s"], HOST)]
    for svc in ("_submission", "_imap", "_pop3"):
        assert recs[(svc + "._tcp." + d, "SRV")] == ["0 0 0 ."]
    assert recs[("autoconfig." + d, "CNAME")] == [HOST + "."]
    assert recs[("autodiscover." + d, "CNAME")] == [HOST + "."]
    assert recs[("_autodiscover._tcp." + d, "SRV")] == ["0 1 %d %s." % (p["https"], HOST)]
    # every record has its comment line right above it
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(";"):
            assert lines[i - 1].startswith(";"), line
    # per-domain server names reach the SRV records; unknown domains are refused
    out = postino("dns", OTHER_DOMAIN, "--data", srv.data).stdout
    assert "_imaps._tcp.other.test.\t3600\tIN\tSRV\t0 1 %d %s." % (p["imaps"], OTHER_IMAP) in out
    cp = postino("dns", "not-hosted.test", "--data", srv.data, check=False)
    assert cp.returncode == 1 and "postino domain add" in cp.stderr


# ---------------------------------------------------------------- the /setup page

def chromium(args, timeout=90):
    need("chromium")
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-extensions", *args],
                          capture_output=True, timeout=timeout)


def decode_qr(svg, tmp_path):
    need("rsvg-convert")
    need("zbarimg")
    f = tmp_path / "qr.svg"
    f.write_text(svg)
    png = tmp_path / "qr.png"
    run(["rsvg-convert", "-w", "600", "-b", "white", "-o", str(png), str(f)])
    cp = run(["zbarimg", "-q", "--raw", str(png)], check=False)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def profile_url(srv, addr):
    return "https://%s:%d/mail.mobileconfig?email=%s" % (HOST, srv.ports["https"], addr)


def test_setup_page_in_chromium(srv, tmp_path):
    url = "http://127.0.0.1:%d/setup?email=%s" % (srv.ports["http"], urllib.parse.quote(ADDR))
    shot = tmp_path / "setup.png"
    cp = chromium(["--screenshot=%s" % shot, "--window-size=412,900", url])
    assert shot.exists(), cp.stderr.decode()[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = chromium(["--dump-dom", "--accept-lang=en-US", url]).stdout.decode()
    p = srv.ports
    for k, v in (("imap-server", HOST), ("imap-port", p["imaps"]), ("imap-encryption", "SSL/TLS"),
                 ("imap-username", ADDR), ("imap-starttls-port", p["imap"]),
                 ("pop3-port", p["pop3s"]), ("pop3-starttls-port", p["pop3"]),
                 ("smtp-server", HOST), ("smtp-port", p["submissions"]),
                 ("smtp-starttls-port", p["submission"]), ("smtp-username", ADDR)):
        assert re.search(r'data-k="%s">%s<' % (k, re.escape(str(v))), dom), k
    assert '<meta name="viewport"' in dom and "<script" not in dom
    for name in ("Outlook", "Thunderbird", "iPhone", "Mac", "Android"):
        assert name in dom
    href = re.search(r'<a id="profile" href="([^"]+)"', dom).group(1)
    assert href.replace("&amp;", "&") == profile_url(srv, ADDR)
    svg = re.search(r"<svg.*?</svg>", dom, re.S).group(0)
    assert decode_qr(svg, tmp_path) == profile_url(srv, ADDR)
    # Italian when the browser asks for it
    dom_it = chromium(["--dump-dom", "--accept-lang=it-IT,it", url]).stdout.decode()
    assert 'lang="it"' in dom_it and "Configura la posta" in dom_it
    assert "Porta" in dom_it and "Passo per passo" in dom_it


def test_setup_page_language_device_and_escaping(srv, tmp_path):
    path = "/setup?email=" + urllib.parse.quote(ADDR)
    st, r, body = fetch(srv, path, headers={"Accept-Language": "it-IT,it;q=0.9,en;q=0.8"})
    assert st == 200 and r.getheader("Content-Language") == "it" and b"Impostazioni per" in body
    st, r, body = fetch(srv, path, headers={"Accept-Language": "en;q=1, it;q=0.5"})
    assert r.getheader("Content-Language") == "en" and b"Settings for" in body
    st, body = curl(srv, path, True, args=("-H", "Accept-Language: it"))
    assert st == 200 and b"Configura la posta" in body

    def guides(ua):
        body = fetch(srv, path, headers={"User-Agent": ua})[2].decode()
        return re.findall(r'<section class="guide"><h3>([^<]+)</h3>', body)
    assert guides("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)")[0].startswith("Apple Mail on iPhone")
    assert guides("Mozilla/5.0 (Linux; Android 14; Pixel 8)")[0].startswith("Android")
    assert guides("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")[0].startswith("Outlook")
    assert guides("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)")[0].startswith("Apple Mail on the Mac")
    # on Apple devices the profile comes before the guides, elsewhere after them
    iphone = fetch(srv, path, headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"})[2]
    assert iphone.index(b'id="apple"') < iphone.index(b'id="guides"')
    linux = fetch(srv, path, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})[2]
    assert linux.index(b'id="apple"') > linux.index(b'id="guides"')
    # the form alone, and request text always escaped
    st, _, body = fetch(srv, "/setup")
    assert st == 200 and b'name="email"' in body and b"<svg" not in body
    evil = '"><script>alert(1)</script>'
    st, _, body = fetch(srv, "/setup?email=" + urllib.parse.quote(evil))
    assert st == 200 and b"<script>" not in body and b"&lt;script&gt;" in body
    assert b'id="error"' in body
    st, _, body = fetch(srv, "/setup?email=x%40not-hosted.test")
    assert b'id="error"' in body and b"<svg" not in body


@pytest.mark.parametrize("local", ["a", "a.much.longer.name.for.a.bigger.symbol",
                                   "x" * 64])
def test_setup_qr_decodes(srv, tmp_path, local):
    """QR codes of several versions decode to the profile URL."""
    addr = local + "@" + DOMAIN
    st, _, body = fetch(srv, "/setup?email=" + urllib.parse.quote(addr))
    assert st == 200
    svg = re.search(rb"<svg.*?</svg>", body, re.S).group(0).decode()
    assert decode_qr(svg, tmp_path) == profile_url(srv, addr)


# ---------------------------------------------------------------- HTTP/1.1 bounds

def raw(srv, data, tls=False, read_until_close=True):
    s = socket.create_connection(("127.0.0.1", srv.ports["https" if tls else "http"]), timeout=10)
    if tls:
        s = srv.ssl_context().wrap_socket(s, server_hostname=HOST)
    s.sendall(data)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def status_of(resp):
    return int(resp.split(b" ", 2)[1])


@pytest.mark.parametrize("tls", [False, True])
def test_bounds(srv, tls):
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    r = raw(srv, big, tls)
    assert status_of(r) == 431 and b"Connection: close" in r
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400)
                                                       for i in range(90)) + b"\r\n"
    assert status_of(raw(srv, many, tls)) == 431
    longuri = b"GET /setup?email=" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(raw(srv, longuri, tls)) == 414
    body = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"
    assert status_of(raw(srv, body, tls)) == 413
    assert status_of(raw(srv, b"GARBAGE\r\n\r\n", tls)) == 400
    assert status_of(raw(srv, b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", tls)) == 505
    st, _, _ = fetch(srv, "/no/such/page", tls)
    assert st == 404
    st, r, _ = fetch(srv, "/setup", tls, method="DELETE")
    assert st == 405 and r.getheader("Allow") == "GET, HEAD"
    st, r, _ = fetch(srv, "/mail/config-v1.1.xml", tls, method="PUT", body=b"x")
    assert st == 405
    # curl sees the same
    assert curl(srv, "/setup?email=" + "a" * 10000, tls)[0] == 414
    assert curl(srv, "/x", tls, args=("-H", "X-Big: " + "b" * 40000))[0] == 431
    assert curl(srv, "/nothing-here", tls)[0] == 404
    assert curl(srv, "/setup", tls, args=("-X", "PATCH"))[0] == 405


@pytest.mark.parametrize("tls", [False, True])
def test_keep_alive_and_head(srv, tls):
    c = conn(srv, tls)
    for path, status in (("/setup", 200), ("/mail/config-v1.1.xml?emailaddress=" + ADDR, 200),
                         ("/nope", 404)):
        c.request("GET", path, headers={"Host": HOST})
        r = c.getresponse()
        r.read()
        assert r.status == status, (path, r.status)
        assert r.getheader("Connection") is None   # the connection stays open
    sock = c.sock
    c.request("HEAD", "/setup", headers={"Host": HOST})
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 1000 and r.read() == b""
    assert c.sock is sock, "all requests went over one connection"
    c.close()


@pytest.mark.parametrize("tls", [False, True])
def test_pipelining(srv, tls):
    reqs = (b"GET /mail/config-v1.1.xml?emailaddress=bob%40example.test HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(AD_REQ % ADDR)).encode() + b"\r\n\r\n" + (AD_REQ % ADDR).encode()
            + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /setup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(srv, reqs, tls)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
    assert statuses == [200, 200, 404, 200]
    assert out.count(b"<clientConfig") == 1 and out.count(b"<Autodiscover") == 1
    # chunked request bodies are understood too
    ch = (AD_REQ % ADDR).encode()
    req = (b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(ch), ch))
    out = raw(srv, req, tls)
    assert status_of(out) == 200 and b"<Protocol>" in out


def test_byte_by_byte_request(srv):
    s = socket.create_connection(("127.0.0.1", srv.ports["http"]), timeout=10)
    for b in b"GET /setup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
        s.send(bytes([b]))
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    assert status_of(out) == 200 and out.endswith(b"</html>\n")


def test_plain_http_on_https_port(srv):
    s = socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10)
    s.sendall(b"GET /setup HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    s.close()
    assert status_of(out) == 400 and b"use https://" in out
    head, _, body = out.partition(b"\r\n\r\n")
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)


def test_garbage_never_hurts(srv):
    """Random bytes and cut-off requests on many connections; the server keeps answering."""
    import random
    rnd = random.Random(6)
    for i in range(60):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 3000)))
        if i % 3 == 0:
            data = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n" + data
        s = socket.create_connection(("127.0.0.1", srv.ports["http" if i % 2 else "https"]),
                                     timeout=10)
        try:
            s.sendall(data)
        except OSError:
            pass
        s.close()
    assert fetch(srv, "/setup")[0] == 200
    assert fetch(srv, "/setup", True)[0] == 200


def test_slow_request_gets_408_and_idle_connection_closes(srv):
    """A request trickled in byte by byte does not renew its timer (http.command_timeout = 2s
    on port 80); an idle keep-alive connection is closed after the same time."""
    import time
    s = socket.create_connection(("127.0.0.1", srv.ports["http"]), timeout=10)
    start = time.monotonic()
    s.sendall(b"GET /setup HTTP/1.1\r\n")
    out = b""
    try:
        for _ in range(20):
            time.sleep(0.3)   # the subject: a client that trickles its request in
            s.send(b"X")
    except OSError:
        pass
    s.settimeout(10)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    s.close()
    assert status_of(out) == 408, out
    assert time.monotonic() - start < 8
    c = conn(srv, False)
    c.request("GET", "/setup", headers={"Host": HOST})
    c.getresponse().read()
    # the server closes the idle connection when its 2 s timer runs out: recv waits for that
    c.sock.settimeout(10)
    t1 = time.monotonic()
    assert c.sock.recv(1) == b"", "the idle connection should have been closed"
    assert 1.5 <= time.monotonic() - t1 < 8, "closed after %.2fs" % (time.monotonic() - t1)
    c.close()


@pytest.mark.parametrize("tls", [False, True])
def test_expect_100_continue(srv, tls):
    body = (AD_REQ % ADDR).replace("<Request>", "<Request>" + " " * 3000).encode()
    s = socket.create_connection(("127.0.0.1", srv.ports["https" if tls else "http"]), timeout=10)
    if tls:
        s = srv.ssl_context().wrap_socket(s, server_hostname=HOST)
    s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(body)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    assert status_of(out) == 200 and out.count(b"<Protocol>") == 6
    # curl sends Expect: 100-continue itself for bodies this large
    st, data = curl(srv, "/autodiscover/autodiscover.xml", tls, args=(
        "-X", "POST", "-H", "Content-Type: text/xml", "--data-binary", body.decode()))
    assert st == 200
    check_pox(srv, data, ADDR)
