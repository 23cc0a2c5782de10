"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524) through Python's imaplib: GENURLAUTH makes a
URL another party can fetch with URLFETCH, EXPIRE and RESETKEY end it, the access identifier
says who may use it, and BINARY / BODYPARTSTRUCTURE decode a part.
"""
import imaplib
import os
import re
import stat
import time

import pytest

from test_imap_helpers import _no_crash, imaplib_login, new_user, srv  # noqa: F401

HOST = "mail.example.test"
B64 = "aGVsbG8gd29ybGQ="   # "hello world"
MSG = ("From: {u}\r\nTo: {u}\r\nSubject: urlauth\r\nMIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
       "--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
       "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
       "\r\n" + B64 + "\r\n--b--\r\n")


def login(srv, user):  # noqa: F811
    m = imaplib_login(srv, user, "imaps")
    return m


def cmd(m, name, *args):
    """A command imaplib does not know; (status, untagged lines of that name, tagged text)."""
    m.untagged_responses.pop(name, None)
    typ, dat = m.xatom(name, *args)
    return typ, m.untagged_responses.pop(name, []), dat


def put(srv, m, user, box="INBOX"):  # noqa: F811
    typ, dat = m.append(box, None, None, MSG.format(u=user).encode())
    assert typ == "OK", dat
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", dat[0]).group(1))
    return uid


def genurlauth(m, rump):
    typ, untagged, dat = cmd(m, "GENURLAUTH", '"%s"' % rump, "INTERNAL")
    assert typ == "OK", (typ, dat)
    url = untagged[0]
    url = url.decode() if isinstance(url, bytes) else url
    return url.strip('"')


def urlfetch(m, *args):
    """The data of each URL's answer (bytes, None for NIL, or the raw parts of a list)."""
    typ, untagged, dat = cmd(m, "URLFETCH", *args)
    assert typ == "OK", (typ, dat)
    out = []
    for u in untagged:
        if isinstance(u, tuple):          # "url {n}" + literal
            out.append(u[1])
        elif u in (b"", b")"):            # the rest of a line after a literal
            continue
        elif u.endswith(b" NIL"):
            out.append(None)
        else:
            out.append(u)
    return out


def rump(user, uid, access, box="INBOX", extra=""):
    local, domain = user.split("@")
    return "imap://%s@%s/%s/;UID=%d%s;URLAUTH=%s" % (local, domain, box, uid, extra, access)


@pytest.fixture
def owner(srv):  # noqa: F811
    return new_user(srv, "owner")


def test_capability_after_login_only(srv, owner):  # noqa: F811
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=10)
    assert "URLAUTH" not in m.capabilities
    m.login(owner, srv.password)
    typ, dat = m.capability()
    caps = dat[0].decode().split()
    assert "URLAUTH" in caps and "URLAUTH=BINARY" in caps
    m.logout()


def test_genurlauth_urlfetch_roundtrip(srv, owner):  # noqa: F811
    m = login(srv, owner)
    uid = put(srv, m, owner)
    url = genurlauth(m, rump(owner, uid, "user+" + owner))
    assert re.search(r";URLAUTH=user\+[^:]+:INTERNAL:[0-9a-f]{64}$", url), url
    whole = urlfetch(m, url)[0]
    assert whole == MSG.format(u=owner).encode()
    # a section, and the user as a full address (%40) at the server's host name
    part = genurlauth(m, "imap://%s@%s/INBOX/;UID=%d/;SECTION=1;URLAUTH=user+%s"
                      % (owner.replace("@", "%40"), HOST, uid, owner))
    assert urlfetch(m, part)[0] == b"first part"
    # another account may fetch an authuser URL, and only that
    other = new_user(srv, "other")
    o = login(srv, other)
    anyone = genurlauth(m, rump(owner, uid, "authuser"))
    assert urlfetch(o, anyone)[0] == MSG.format(u=owner).encode()
    o.logout()
    m.logout()


def test_expired_url_gives_nil(srv, owner):  # noqa: F811
    m = login(srv, owner)
    uid = put(srv, m, owner)
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    old = genurlauth(m, rump(owner, uid, "user+" + owner, extra=";EXPIRE=" + past))
    new = genurlauth(m, rump(owner, uid, "user+" + owner, extra=";EXPIRE=" + future))
    assert urlfetch(m, old, new) == [None, MSG.format(u=owner).encode()]
    # the EXPIRE is under the token: moving it forward breaks the URL
    forged = old.replace(past, future)
    assert urlfetch(m, forged) == [None]
    m.logout()


def test_resetkey_invalidates(srv, owner):  # noqa: F811
    m = login(srv, owner)
    uid = put(srv, m, owner)
    m.create("Other")
    uid2 = put(srv, m, owner, "Other")
    url = genurlauth(m, rump(owner, uid, "user+" + owner))
    url2 = genurlauth(m, rump(owner, uid2, "user+" + owner, box="Other"))
    assert None not in urlfetch(m, url, url2)
    typ, _, dat = cmd(m, "RESETKEY", "INBOX")
    assert typ == "OK", dat
    assert urlfetch(m, url, url2)[0] is None          # INBOX's key only
    assert urlfetch(m, url2)[0] is not None
    fresh = genurlauth(m, rump(owner, uid, "user+" + owner))
    assert fresh != url and urlfetch(m, fresh)[0] is not None
    typ, _, dat = cmd(m, "RESETKEY")                   # every key of the account
    assert typ == "OK", dat
    assert urlfetch(m, fresh, url2) == [None, None]
    typ, _, dat = cmd(m, "RESETKEY", "Nowhere")
    assert typ == "NO"
    # the keys are in the account's index, not readable by other users of the host
    st = os.stat(os.path.join(srv.maildir(owner), "index.db"))
    assert stat.S_IMODE(st.st_mode) & 0o007 == 0, oct(st.st_mode)
    m.logout()


def test_wrong_user_refused(srv, owner):  # noqa: F811
    m = login(srv, owner)
    uid = put(srv, m, owner)
    other = new_user(srv, "other")
    o = login(srv, other)
    mine = genurlauth(m, rump(owner, uid, "user+" + owner))
    submit = genurlauth(m, rump(owner, uid, "submit+" + owner))
    # user+owner is the owner's alone; submit+ is for the submission server, not IMAP users
    assert urlfetch(o, mine) == [None]
    assert urlfetch(m, submit) == [None]
    # a URL for the other user names them as its access identifier: still the owner's token
    forged = mine.replace("user+" + owner, "user+" + other)
    assert urlfetch(o, forged) == [None]
    bad_token = mine[:-4] + ("0000" if not mine.endswith("0000") else "1111")
    assert urlfetch(m, bad_token) == [None]
    # nobody authorizes URLs of someone else's mailbox
    typ, _, dat = cmd(o, "GENURLAUTH", '"%s"' % rump(owner, uid, "authuser"), "INTERNAL")
    assert typ == "NO", dat
    # a URL without URLAUTH is not fetched
    local, domain = owner.split("@")
    assert urlfetch(m, "imap://%s@%s/INBOX/;UID=%d" % (local, domain, uid)) == [None]
    o.logout()
    m.logout()


def test_urlfetch_binary(srv, owner):  # noqa: F811
    m = login(srv, owner)
    uid = put(srv, m, owner)
    url = genurlauth(m, rump(owner, uid, "user+" + owner, extra="/;SECTION=2"))
    typ, untagged, dat = cmd(m, "URLFETCH", "(%s BINARY BODYPARTSTRUCTURE)" % url)
    assert typ == "OK", dat
    head, data = untagged[0][0], untagged[0][1]
    assert data == b"hello world"
    assert b"BODYPARTSTRUCTURE (\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 11" \
        in head, head
    # no NUL in the decoded data: a plain literal (literal8 only for data holding NUL)
    assert head.rstrip().endswith(b"BINARY {11}"), head
    # without BINARY the part comes as stored
    typ, untagged, dat = cmd(m, "URLFETCH", "(%s BODY)" % url)
    assert untagged[0][1] == B64.encode()
    # BINARY and BODY together are refused
    with pytest.raises(imaplib.IMAP4.error, match="BINARY and BODY"):
        cmd(m, "URLFETCH", "(%s BINARY BODY)" % url)
    m.logout()
