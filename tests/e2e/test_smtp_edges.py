"""SMTP edge cases of issue 11: RCPT TO:<Postmaster> and postmaster@ every hosted domain (RFC 5321
4.5.1), internationalised domains and local parts (RFC 6531, IDNA with libidn2), the early-talker
refusal and the directory-harvest brake on port 25, and the memory a pre-auth client can make a
worker hold.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_smtp_edges.py
"""
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import POSTINO_BIN, USERS, postino, start_server, finish_server, wait_until
from smtphelp import Raw, auth_plain_arg, message

IDN_U = "b\u00fccher.example"          # bücher.example
IDN_A = "xn--bcher-kva.example"
UTF8_LOCAL = "j\u00f6s\u00e9"          # jösé
UTF8_LOCAL_DIR = "j%C3%B6s%C3%A9"      # store_account_path escapes non-ASCII octets
PW = "Idn-Secret-77"


@pytest.fixture(scope="module")
def srv(workdir, pki):
    # the greet pause stays at its default; the brake is tuned per test through its own server
    s = start_server(os.path.join(workdir, "edges"), pki, extra_conf="max_conn_per_ip = 50\n")
    yield s
    finish_server(s)


def files_with(srv, domain_dir, local_dir, token):
    """Message files under mail/<domain_dir>/<local_dir>/new holding token."""
    d = os.path.join(srv.data, "mail", domain_dir, local_dir, "new")
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            if token.encode() in f.read():
                out.append(n)
    return out


def send_raw(port, rcpt, token, utf8=False, sender="sender@remote.test", params=""):
    """One message over a raw connection to rcpt; returns (RCPT reply, end-of-data reply)."""
    with Raw(port) as c:
        c.ehlo()
        r = c.cmd(("MAIL FROM:<%s>%s" % (sender, " SMTPUTF8" if utf8 else "")).encode())
        assert r.code == 250, r
        rr = c.cmd(("RCPT TO:%s%s" % (rcpt, params)).encode("utf-8"))
        if rr.code != 250:
            return rr, None
        r = c.cmd("DATA")
        assert r.code == 354, r
        return rr, c.data_body(message(token, to="postmaster"))


# ---------------------------------------------------------------- postmaster (RFC 5321 4.5.1)

def test_rcpt_postmaster_without_domain_is_accepted_and_delivered(srv, token):
    # hostname mail.example.test: the server's domain is example.test, whose oldest account
    # (the first the fixture created) is alice
    first = next(iter(USERS))
    assert first == "alice@example.test"
    for form in ("<Postmaster>", "<POSTMASTER>", "<postmaster>"):
        rr, rd = send_raw(srv.smtp_port, form, token + form)
        assert rr.code == 250, (form, rr)
        assert rd.code == 250, (form, rd)
        wait_until(lambda: srv.find_messages(first, token + form), 5, 0.05,
                   "the message to %s in alice's INBOX" % form)
    # parameters after the bare <Postmaster> still work, junk is a syntax error
    with Raw(srv.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER").code == 250
        assert c.cmd("RCPT TO:<Postmaster>junk").code == 501


def test_postmaster_of_every_hosted_domain_reaches_a_person(srv, token):
    # other.test has one account (dave); a domain without accounts falls back to the server's
    # oldest account; an explicit alias wins over the automatic one
    postino("domain", "add", "noaccounts.test", "--data", srv.data)
    postino("domain", "add", "explicit.test", "--data", srv.data)
    postino("alias", "add", "postmaster@explicit.test", "bob@example.test", "--data", srv.data)
    cases = [("postmaster@other.test", "dave@other.test"),
             ("PostMaster@Other.Test", "dave@other.test"),
             ("postmaster@noaccounts.test", "alice@example.test"),
             ("postmaster@explicit.test", "bob@example.test"),
             ("postmaster@example.test", "alice@example.test")]
    for rcpt, who in cases:
        t = "%s-%s" % (token, rcpt.lower())
        rr, rd = send_raw(srv.smtp_port, "<%s>" % rcpt, t)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: srv.find_messages(who, t), 5, 0.05, "%s in %s" % (rcpt, who))
    # the explicit alias is the only target: alice does not get a copy
    t = "%s-%s" % (token, "postmaster@explicit.test")
    assert not srv.find_messages("alice@example.test", t)
    # other local parts of an account-less domain stay unknown
    rr, _ = send_raw(srv.smtp_port, "<nobody@noaccounts.test>", token)
    assert rr.code == 550, rr


# ---------------------------------------------------------------- IDN (RFC 6531, IDNA2008)

@pytest.fixture(scope="module")
def idn(srv):
    cp = postino("domain", "add", IDN_U, "--data", srv.data)
    assert IDN_A in cp.stdout, cp.stdout
    postino("user", "add", "x@" + IDN_U.upper(), "--data", srv.data, input=PW + "\n")
    postino("user", "add", "%s@%s" % (UTF8_LOCAL, IDN_U), "--data", srv.data, input=PW + "\n")
    postino("alias", "add", "info@" + IDN_U, "%s@%s" % (UTF8_LOCAL, IDN_A), "--data", srv.data)
    return srv


def test_idn_domain_is_stored_as_a_label(idn):
    out = postino("domain", "list", "--data", idn.data).stdout.split()
    assert IDN_A in out and IDN_U not in out, out
    users = postino("user", "list", IDN_U, "--data", idn.data).stdout
    assert "x@" + IDN_A in users, users
    assert ("%s@%s" % (UTF8_LOCAL, IDN_A)) in users, users
    # adding it again in the other form is the same domain
    cp = postino("domain", "add", IDN_A, "--data", idn.data)
    assert "already" in (cp.stdout + cp.stderr).lower(), cp.stdout + cp.stderr


def test_rcpt_to_u_label_domain_is_delivered_on_25(idn, token):
    for rcpt in ("<x@%s>" % IDN_U, "<X@B\u00dcCHER.example>", "<x@%s>" % IDN_A):
        t = token + rcpt.encode("utf-8").hex()
        rr, rd = send_raw(idn.smtp_port, rcpt, t, utf8=True)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: files_with(idn, IDN_A, "x", t), 5, 0.05, "delivery to " + rcpt)


def test_utf8_local_part_receives_mail(idn, token):
    for rcpt in ("<%s@%s>" % (UTF8_LOCAL, IDN_U), "<%s@%s>" % (UTF8_LOCAL, IDN_A),
                 "<info@%s>" % IDN_U):
        t = token + rcpt.encode("utf-8").hex()
        rr, rd = send_raw(idn.smtp_port, rcpt, t, utf8=True)
        assert rr.code == 250, (rcpt, rr)
        assert rd.code == 250, (rcpt, rd)
        wait_until(lambda: files_with(idn, IDN_A, UTF8_LOCAL_DIR, t), 5, 0.05,
                   "delivery to " + rcpt)
    # without SMTPUTF8 a UTF-8 address is refused, never mangled
    rr, _ = send_raw(idn.smtp_port, "<%s@%s>" % (UTF8_LOCAL, IDN_A), token)
    assert rr.code == 553, rr


def test_login_with_u_label_address(idn, token):
    ctx = idn.ssl_context()
    for user in ("x@" + IDN_U, "x@" + IDN_A, "%s@%s" % (UTF8_LOCAL, IDN_U)):
        with Raw(idn.submission_port) as c:
            c.ehlo()
            c.starttls(ctx)
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + auth_plain_arg(user, PW))
            assert r.code == 235, (user, r)


def test_user_add_refuses_malformed_utf8(idn):
    # bytes that are not UTF-8 cannot go through a str argv: pass bytes
    cp = subprocess.run([POSTINO_BIN.encode(), b"user", b"add", b"a\xffb@" + IDN_A.encode(),
                         b"--data", idn.data.encode()], input=(PW + "\n").encode(),
                        capture_output=True, timeout=30)
    assert cp.returncode != 0
    assert b"not a valid address" in cp.stderr, cp.stderr
