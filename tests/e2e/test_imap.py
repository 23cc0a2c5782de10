"""IMAP (issue 3) end to end, one session at a time: login and TLS rules on 143 and 993, every
command with the responses the RFCs (3501, 9051 and the extensions advertised) require.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q tests/e2e/test_imap.py
"""
import base64
import calendar
import imaplib
import os
import re
import socket
import time

import pytest

from test_imap_helpers import (HOST, Imap, Lit, _no_crash, append, clients, imaplib_login,
                               index_rows, message, message_file, new_user, parse, quote, srv,
                               user, wait_until)

HOWS = ("starttls", "imaps")



def norecent(flags):
    """A FLAGS list without \\Recent (RFC 3501 2.3.2: set for IMAP4rev1 sessions)."""
    return [f for f in flags if f != "\\Recent"]


def caps_of(resp_line):
    m = re.search(rb"\[CAPABILITY ([^\]]*)\]", resp_line)
    return set(m.group(1).decode().split()) if m else None


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


# ------------------------------------------------------------------ TLS and login

def test_plaintext_143_refuses_login(srv, user, clients):
    c = Imap(srv, "plain")
    clients.append(c)
    greet = caps_of(c.greeting)
    assert greet is not None, c.dialogue()
    caps = c.caps()
    for cs in (greet, caps):
        assert "LOGINDISABLED" in cs and "STARTTLS" in cs, c.dialogue()
        assert not [x for x in cs if x.upper().startswith("AUTH=")], c.dialogue()
    r = c.expect("NO", "LOGIN", quote(user), quote(srv.password))
    assert r.code == "PRIVACYREQUIRED", c.dialogue()
    r = c.cmd("AUTHENTICATE PLAIN", b64("\0%s\0%s" % (user, srv.password)))
    assert r.status == "NO" and r.code == "PRIVACYREQUIRED", c.dialogue()
    # without an initial response: refused at once, no '+' continuation
    c.send("a1 AUTHENTICATE PLAIN\r\n")
    line = c.read_response()
    assert line.startswith(b"a1 NO [PRIVACYREQUIRED]"), c.dialogue()
    r = c.expect("BAD", "SELECT INBOX")   # still not authenticated
    # now upgrade: AUTH= appears, LOGINDISABLED and STARTTLS go away
    c.ok("STARTTLS")
    c.starttls()
    caps = c.caps()
    assert {"AUTH=PLAIN", "AUTH=LOGIN"} <= caps, c.dialogue()
    assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, c.dialogue()
    r = c.login(user)
    assert "IMAP4rev1" in caps_of(r.raw), c.dialogue()
    c.expect("BAD", "STARTTLS")   # not again


def test_commands_pipelined_behind_starttls_are_discarded(srv, user):
    s = socket.create_connection(("127.0.0.1", srv.port("imap")), 10)
    try:
        f = b""
        while b"\r\n" not in f:
            f += s.recv(4096)
        s.sendall(b"a STARTTLS\r\nb LOGIN %s %s\r\n" % (user.encode(), srv.password.encode()))
        got = b""
        while b"a OK" not in got:
            chunk = s.recv(4096)
            assert chunk, "closed before 'a OK': %r" % got
            got += chunk
        assert got.endswith(b"\r\n") and b"\r\nb " not in got and not got.startswith(b"b "), got
        t = srv.ctx().wrap_socket(s, server_hostname=HOST)
        t.settimeout(10)
        t.sendall(b"c CAPABILITY\r\n")
        out = b""
        while not re.search(rb"(^|\r\n)c (OK|NO|BAD)[^\r]*\r\n", out):
            chunk = t.recv(65536)
            assert chunk, "closed: %r" % out
            out += chunk
        assert not re.search(rb"(^|\r\n)b ", out), "pipelined LOGIN answered after TLS: %r" % out
        assert b"AUTH=PLAIN" in out, "still logged out expected: %r" % out
        t.sendall(b"d SELECT INBOX\r\n")
        out = b""
        while not re.search(rb"(^|\r\n)d (OK|NO|BAD)", out):
            out += t.recv(65536)
        assert re.search(rb"(^|\r\n)d BAD", out), "LOGIN behind STARTTLS was executed: %r" % out
        t.close()
    finally:
        s.close()


@pytest.mark.parametrize("how", HOWS)
def test_login_capability_noop_logout(srv, user, how, clients):
    c = Imap(srv, how)
    clients.append(c)
    if how == "imaps":
        greet = caps_of(c.greeting)
        assert greet and "AUTH=PLAIN" in greet and "LOGINDISABLED" not in greet, c.dialogue()
        assert "STARTTLS" not in greet, c.dialogue()
    caps = c.caps()
    for cap in ("IMAP4rev1", "IMAP4rev2", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "SPECIAL-USE",
                "CREATE-SPECIAL-USE", "LITERAL-", "ENABLE", "ID", "UNSELECT", "CHILDREN",
                "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "SASL-IR", "CONDSTORE", "QRESYNC",
                "ESEARCH", "SEARCHRES", "BINARY", "MULTIAPPEND", "UTF8=ACCEPT", "AUTH=PLAIN"):
        assert cap in caps, (cap, c.dialogue())
    assert [x for x in caps if x.startswith("APPENDLIMIT=")], c.dialogue()
    r = c.expect("NO", "LOGIN", quote(user), quote("wrong-password"))
    assert r.code == "AUTHENTICATIONFAILED", c.dialogue()
    r = c.expect("NO", "LOGIN", quote("nobody-" + user), quote(srv.password))
    assert r.code == "AUTHENTICATIONFAILED", c.dialogue()
    c.expect("BAD", "SELECT INBOX")
    r = c.login(user)
    after = caps_of(r.raw)
    assert after and "AUTH=PLAIN" not in after and "IMAP4rev2" in after, c.dialogue()
    assert "LITERAL+" in after and "LITERAL-" not in after, c.dialogue()   # RFC 7888
    c.expect("BAD", "LOGIN", quote(user), quote(srv.password))   # already logged in
    c.ok("NOOP")
    r = c.ok("LOGOUT")
    assert r.of("BYE"), c.dialogue()
    with pytest.raises((EOFError, OSError)):
        c.read_line(timeout=5)


@pytest.mark.parametrize("how", HOWS)
def test_authenticate_plain_with_and_without_sasl_ir(srv, user, how, clients):
    # SASL-IR: the response on the command line
    c = Imap(srv, how)
    clients.append(c)
    r = c.ok("AUTHENTICATE PLAIN", b64("\0%s\0%s" % (user, srv.password)))
    assert c.ok("SELECT INBOX")
    # authorization identity equal to the user is fine too
    c = Imap(srv, how)
    clients.append(c)
    c.ok("AUTHENTICATE PLAIN", b64("%s\0%s\0%s" % (user, user, srv.password)))
    # without SASL-IR: empty continuation, then the response
    c = Imap(srv, how)
    clients.append(c)
    c.send("p1 AUTHENTICATE PLAIN\r\n")
    assert c.read_response().startswith(b"+"), c.dialogue()
    c.send(b64("\0%s\0%s" % (user, srv.password)) + "\r\n")
    r = c.collect("p1")
    assert r.status == "OK", c.dialogue()
    caps = caps_of(r.raw)   # the OK of a login carries the capabilities after login
    assert caps is not None and "AUTH=PLAIN" not in caps, c.dialogue()
    c.ok("SELECT INBOX")
    # wrong password, malformed response, cancel
    c = Imap(srv, how)
    clients.append(c)
    r = c.expect("NO", "AUTHENTICATE PLAIN", b64("\0%s\0nope" % user))
    assert r.code == "AUTHENTICATIONFAILED", c.dialogue()
    r = c.cmd("AUTHENTICATE PLAIN", "%%%notbase64")
    assert r.status == "BAD", c.dialogue()   # RFC 9051 6.2.2: not base64 MUST be BAD
    c.send("p2 AUTHENTICATE PLAIN\r\n")
    assert c.read_response().startswith(b"+"), c.dialogue()
    c.send("*\r\n")
    assert c.collect("p2").status == "BAD", c.dialogue()
    r = c.expect("NO", "AUTHENTICATE CRAM-MD5")
    c.ok("AUTHENTICATE PLAIN", b64("\0%s\0%s" % (user, srv.password)))


def test_authenticate_login_mechanism(srv, user, clients):
    c = Imap(srv, "imaps")
    clients.append(c)
    c.send("l1 AUTHENTICATE LOGIN\r\n")
    assert c.read_response().startswith(b"+ "), c.dialogue()
    c.send(b64(user) + "\r\n")
    assert c.read_response().startswith(b"+ "), c.dialogue()
    c.send(b64(srv.password) + "\r\n")
    assert c.collect("l1").status == "OK", c.dialogue()


@pytest.mark.parametrize("how", HOWS)
def test_imaplib_every_command(srv, how):
    """The stock Python client drives every command over the given transport."""
    addr = new_user(srv)
    m = imaplib_login(srv, addr, how)
    try:
        assert m.state == "AUTH"
        typ, caps = m.capability()
        assert typ == "OK" and b"IDLE" in caps[0]
        assert m.noop()[0] == "OK"
        typ, data = m.enable("CONDSTORE")
        assert typ == "OK"
        imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
        typ, data = m._simple_command("ID", '("name" "pytest")')
        assert typ == "OK" and m._untagged_response(typ, data, "ID")[1][0].startswith(b'("name"')
        assert m.namespace()[0] == "OK"
        assert m.create("Lib/Sub")[0] == "OK"
        assert m.rename("Lib", "Lib2")[0] == "OK"
        assert m.subscribe("Lib2/Sub")[0] == "OK"
        typ, data = m.lsub('""', "Lib2/*")
        assert typ == "OK" and any(b"Lib2/Sub" in d for d in data), data
        assert m.unsubscribe("Lib2/Sub")[0] == "OK"
        typ, data = m.list('""', "Lib2*")
        names = [d.rsplit(b" ", 1)[1] for d in data]
        assert names == [b"Lib2", b"Lib2/Sub"], data
        for i in range(3):
            typ, data = m.append("INBOX", "(\\Flagged)" if i == 0 else None,
                                 imaplib.Time2Internaldate(time.time()),
                                 message("imaplib %d" % i, to=addr).encode())
            assert typ == "OK" and b"APPENDUID" in data[0], data
        typ, data = m.status("INBOX", "(MESSAGES UNSEEN)")
        assert typ == "OK" and b"MESSAGES 3" in data[0] and b"UNSEEN 3" in data[0], data
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK" and data == [b"3"]
        assert m.store("1", "+FLAGS", "(\\Seen)")[0] == "NO"   # read-only
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"3"]
        typ, data = m.search(None, "FLAGGED")
        # of the three, only the first is \\Flagged; with CONDSTORE enabled (above) the highest
        # mod-sequence of the hits follows
        assert re.fullmatch(rb"1 \(MODSEQ \d+\)", data[0]) and len(data) == 1, data
        typ, data = m.uid("SEARCH", None, "ALL")
        assert data[0].split()[:3] == [b"1", b"2", b"3"], data
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and data[0][1].strip() == b"Subject: imaplib 0", data
        typ, data = m.store("2", "+FLAGS", "(\\Deleted)")
        assert typ == "OK" and b"\\Deleted" in data[0], data
        typ, data = m.expunge()
        assert typ == "OK" and data == [b"2"], data
        typ, data = m.copy("1", "Lib2")
        assert typ == "OK" and b"COPYUID" in data[0], data
        typ, data = m.uid("MOVE", "3", "Lib2/Sub")
        assert typ == "OK", data
        assert m.check()[0] == "OK"
        # IDLE by hand through imaplib's socket
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        assert m.readline().startswith(b"+")
        m.send(b"DONE\r\n")
        line = m.readline()
        while not line.startswith(tag):
            line = m.readline()
        assert line.startswith(tag + b" OK"), line
        assert m.unselect()[0] == "OK"
        m.select("Lib2")
        assert m.close()[0] == "OK"
        assert m.delete("Lib2/Sub")[0] == "OK"
        typ, data = m.list('""', "Lib2*")
        assert len(data) == 1 and data[0].endswith(b"Lib2"), data
        assert m.logout()[0] == "BYE"
    finally:
        try:
            m.shutdown()
        except Exception:
            pass


# ------------------------------------------------------------------ ENABLE, ID, NAMESPACE

def test_enable_id_namespace(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    r = c.ok("ID", '("name" "pytest" "version" "1.0")')
    ident = r.of("ID")[0][0]
    assert isinstance(ident, list) and len(ident) % 2 == 0, c.dialogue()
    r = c.ok("ID NIL")
    assert r.of("ID"), c.dialogue()
    c.expect("BAD", "ENABLE CONDSTORE")   # only once authenticated
    c.login(user)
    r = c.ok("ENABLE IMAP4rev2 UTF8=ACCEPT CONDSTORE")
    enabled = {x.upper() for x in r.of("ENABLED")[0]}
    assert enabled == {"IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE"}, c.dialogue()
    r = c.ok("ENABLE CONDSTORE X-UNKNOWN")   # nothing new enabled
    assert r.of("ENABLED") == [[]], c.dialogue()
    r = c.ok("NAMESPACE")
    ns = r.of("NAMESPACE")[0]
    assert ns[0] == [[b"", b"/"]] and ns[1] is None and ns[2] is None, c.dialogue()
    # IMAP4rev2 SELECT: no RECENT; CONDSTORE: HIGHESTMODSEQ and MODSEQ in FETCH
    srv.deliver(user, message("rev2", to=user))
    r = c.ok("SELECT INBOX")
    assert not r.of("RECENT"), c.dialogue()
    assert any(b"[HIGHESTMODSEQ " in u for u in r.untagged), c.dialogue()
    f = c.ok("FETCH 1 FLAGS").fetches()[1]
    assert "MODSEQ" in f and int(f["MODSEQ"][0]) > 0, c.dialogue()
    # UTF8=ACCEPT: mailbox names in UTF-8, quoted
    c.ok("CREATE", quote("Entwürfe-utf8"))
    r = c.ok("LIST", '""', quote("Entw*"))
    names = {l[-1] for l in r.of("LIST")}
    assert "Entwürfe-utf8".encode() in names, c.dialogue()   # sent as a literal: bytes


# ------------------------------------------------------------------ SELECT / EXAMINE

def test_select_and_examine(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("sel %d" % i, to=user))
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    r = c.ok("SELECT INBOX")
    assert r.code == "READ-WRITE", c.dialogue()
    assert r.exists() == 3, c.dialogue()
    flags = r.of("FLAGS")[0][0]
    assert {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"} <= set(flags), c.dialogue()
    codes = b"".join(r.ok_codes())
    pf = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", codes)
    assert pf and b"\\*" in pf.group(1) and b"\\Seen" in pf.group(1), c.dialogue()
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", codes).group(1))
    un = int(re.search(rb"\[UIDNEXT (\d+)\]", codes).group(1))
    hm = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", codes).group(1))
    con = srv.index(user)
    dbuv, dbun, dbhm = con.execute("SELECT uidvalidity, uidnext, highestmodseq FROM mailboxes "
                                   "WHERE name='INBOX'").fetchone()
    con.close()
    assert (uv, un, hm) == (dbuv, dbun, dbhm), c.dialogue()
    assert un == 4, c.dialogue()
    assert re.search(rb"\[UNSEEN 1\]", codes), c.dialogue()
    c.ok("STORE 1:2 +FLAGS.SILENT (\\Seen)")
    r = c.ok("SELECT INBOX")
    assert re.search(rb"\[UNSEEN 3\]", b"".join(r.ok_codes())), c.dialogue()
    # EXAMINE: read-only, no \Seen from a body fetch, STORE/EXPUNGE refused
    r = c.ok("EXAMINE INBOX")
    assert r.code == "READ-ONLY", c.dialogue()
    assert r.exists() == 3, c.dialogue()
    c.ok("FETCH 3 BODY[]")
    f = c.ok("FETCH 3 FLAGS").fetches()[3]
    assert "\\Seen" not in f["FLAGS"], c.dialogue()
    c.expect("NO", "STORE 3 +FLAGS (\\Flagged)")
    c.expect("NO", "EXPUNGE")
    # SELECT of a missing mailbox: NO, and the session is no longer in the selected state
    r = c.expect("NO", "SELECT NoSuchBox")
    c.expect("BAD", "FETCH 1 FLAGS")
    r = c.ok("SELECT inbox")   # INBOX is case-insensitive
    assert r.exists() == 3


# ------------------------------------------------------------------ CREATE / DELETE / RENAME

def list_names(r):
    return [l[-1].decode() if isinstance(l[-1], bytes) else l[-1] for l in r.of("LIST")]


def list_attrs(r):
    return {(l[-1].decode() if isinstance(l[-1], bytes) else l[-1]): {a.lower() for a in l[0]}
            for l in r.of("LIST")}


def test_create_hierarchy_special_use_and_mutf7(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Projects/2024/Q1")      # parents created implicitly
    r = c.ok('LIST "" "Projects*"')
    attrs = list_attrs(r)
    assert set(attrs) == {"Projects", "Projects/2024", "Projects/2024/Q1"}, c.dialogue()
    assert "\\haschildren" in attrs["Projects"], c.dialogue()
    assert "\\hasnochildren" in attrs["Projects/2024/Q1"], c.dialogue()
    r = c.expect("NO", "CREATE Projects/2024/Q1")
    assert r.code == "ALREADYEXISTS", c.dialogue()
    c.expect("NO", "CREATE INBOX")
    # CREATE-SPECIAL-USE
    c.ok("CREATE MyBin (USE (\\Trash))")
    r = c.ok('LIST (SPECIAL-USE) "" "*"')
    attrs = list_attrs(r)
    assert "\\trash" in attrs.get("MyBin", set()), c.dialogue()
    r = c.expect("NO", "CREATE Odd (USE (\\Bogus))")
    assert r.code == "USEATTR", c.dialogue()
    # modified UTF-7 names (IMAP4rev1 client): stored as UTF-8, listed in mUTF-7
    c.ok('CREATE "Entw&APw-rfe"')
    c.ok('CREATE "Entw&APw-rfe/&ZeVnLIqe-"')   # U+65E5 U+672C U+8A9E
    r = c.ok('LIST "" "Entw*"')
    assert set(list_names(r)) == {"Entw&APw-rfe", "Entw&APw-rfe/&ZeVnLIqe-"}, c.dialogue()
    con = srv.index(user)
    names = {n for (n,) in con.execute("SELECT name FROM mailboxes")}
    con.close()
    assert "Entwürfe" in names and "Entwürfe/日本語" in names, names
    append(c, "Entw&APw-rfe", message("umlaut box", to=user))
    r = c.ok('STATUS "Entw&APw-rfe" (MESSAGES)')
    assert r.of("STATUS")[0][1] == ["MESSAGES", "1"], c.dialogue()
    # invalid modified UTF-7 is refused
    for bad in ('"Bad&AAA"', '"Bad&-x&Jjo"', '"Bad&Jjo"'):
        r = c.cmd("CREATE", bad)
        assert r.status == "NO", c.dialogue()
    # a second session that ENABLEs UTF8=ACCEPT sees the UTF-8 name
    d = Imap(srv)
    clients.append(d)
    d.login(user)
    d.ok("ENABLE UTF8=ACCEPT")
    r = d.ok('LIST "" "Entw*"')
    assert "Entwürfe" in list_names(r), d.dialogue()


def test_create_with_trailing_separator(srv, user, clients):
    """RFC 3501 6.3.3 / RFC 9051 6.3.4: a trailing hierarchy separator declares the intent to
    create children; the mailbox is created without it."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Trailing/")
    assert list_names(c.ok('LIST "" "Trail*"')) == ["Trailing"], c.dialogue()
    c.ok("CREATE Trailing/Child/")
    assert set(list_names(c.ok('LIST "" "Trail*"'))) == {"Trailing", "Trailing/Child"}, \
        c.dialogue()


def test_delete(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Gone/Child")
    append(c, "Gone/Child", message("in child", to=user))
    c.ok("DELETE Gone/Child")
    r = c.ok('LIST "" "Gone*"')
    assert "Gone/Child" not in list_names(r), c.dialogue()
    r = c.expect("NO", "DELETE Gone/Child")
    assert r.code == "NONEXISTENT", c.dialogue()
    c.expect("NO", "DELETE INBOX")
    c.expect("NO", "STATUS Gone/Child (MESSAGES)")
    # deleting the selected mailbox leaves the selected state
    c.ok("CREATE Sel")
    c.ok("SELECT Sel")
    c.ok("DELETE Sel")
    c.expect("BAD", "FETCH 1 FLAGS")
    # the directory is gone from the store
    assert not [d for d in os.listdir(srv.maildir(user)) if d.startswith(".Sel")]


def test_rename_with_children_and_inbox(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Old/Sub/Deep")
    msg = message("child message", to=user).encode()
    append(c, "Old/Sub", msg)
    c.ok("RENAME Old New")
    r = c.ok('LIST "" "*"')
    names = set(list_names(r))
    assert {"New", "New/Sub", "New/Sub/Deep"} <= names, c.dialogue()
    assert not {"Old", "Old/Sub", "Old/Sub/Deep"} & names, c.dialogue()
    c.ok("SELECT New/Sub")
    f = c.ok("FETCH 1 BODY.PEEK[]").fetches()[1]
    assert f["BODY[]"] == msg, c.dialogue()
    c.ok("CREATE Other")
    r = c.expect("NO", "RENAME New Other")
    assert r.code == "ALREADYEXISTS", c.dialogue()
    r = c.expect("NO", "RENAME Missing Whatever")
    assert r.code == "NONEXISTENT", c.dialogue()
    c.expect("NO", "RENAME New INBOX")
    # RENAME INBOX: the messages move, INBOX stays and is empty, new mail lands in INBOX
    for i in range(2):
        srv.deliver(user, message("inbox %d" % i, to=user))
    c.ok("RENAME INBOX Saved")
    r = c.ok("STATUS Saved (MESSAGES)")
    assert r.of("STATUS")[0][1] == ["MESSAGES", "2"], c.dialogue()
    r = c.ok("STATUS INBOX (MESSAGES)")
    assert r.of("STATUS")[0][1] == ["MESSAGES", "0"], c.dialogue()
    srv.deliver(user, message("after rename", to=user))
    r = c.ok("SELECT INBOX")
    assert r.exists() == 1, c.dialogue()
    f = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").fetches()[1]
    assert b"after rename" in f["BODY[HEADER.FIELDS (SUBJECT)]"], c.dialogue()


def test_subscribe_lsub(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE SubA")
    c.ok("CREATE SubB")
    c.ok("UNSUBSCRIBE SubA")
    c.ok("UNSUBSCRIBE SubB")
    r = c.ok('LSUB "" "Sub*"')
    assert r.of("LSUB") == [], c.dialogue()
    c.ok("SUBSCRIBE SubA")
    r = c.ok('LSUB "" "Sub*"')
    assert [l[-1] for l in r.of("LSUB")] == ["SubA"], c.dialogue()
    r = c.ok('LIST (SUBSCRIBED) "" "Sub*"')
    attrs = list_attrs(r)
    assert set(attrs) == {"SubA"} and "\\subscribed" in attrs["SubA"], c.dialogue()
    c.ok("UNSUBSCRIBE SubA")
    r = c.ok('LSUB "" "Sub*"')
    assert r.of("LSUB") == [], c.dialogue()


# ------------------------------------------------------------------ LIST / STATUS

def test_list_patterns_and_extended(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    for b in ("A", "A/B", "A/B/C", "AX"):
        c.ok("CREATE", b)
    r = c.ok('LIST "" "*"')
    names = set(list_names(r))
    assert {"INBOX", "A", "A/B", "A/B/C", "AX", "Sent", "Drafts", "Trash", "Junk",
            "Archive"} <= names, c.dialogue()
    for l in r.of("LIST"):
        assert l[1] == b"/", c.dialogue()   # hierarchy delimiter
    r = c.ok('LIST "" "%"')
    names = set(list_names(r))
    assert {"INBOX", "A", "AX"} <= names and not {"A/B", "A/B/C"} & names, c.dialogue()
    assert set(list_names(c.ok('LIST "" "A/%"'))) == {"A/B"}, c.dialogue()
    assert set(list_names(c.ok('LIST "" "A/*"'))) == {"A/B", "A/B/C"}, c.dialogue()
    assert set(list_names(c.ok('LIST "" "A%"'))) == {"A", "AX", "Archive"}, c.dialogue()
    assert list_names(c.ok('LIST "" "inbox"')) == ["INBOX"], c.dialogue()
    r = c.ok('LIST "" ""')    # the hierarchy delimiter query
    l = r.of("LIST")
    assert len(l) == 1 and "\\noselect" in {a.lower() for a in l[0][0]} and l[0][1] == b"/", \
        c.dialogue()
    attrs = list_attrs(c.ok('LIST "" "*"'))
    assert "\\haschildren" in attrs["A"] and "\\hasnochildren" in attrs["A/B/C"], c.dialogue()
    assert "\\sent" in attrs["Sent"] and "\\trash" in attrs["Trash"], c.dialogue()
    # LIST-EXTENDED selection options
    r = c.ok('LIST (SPECIAL-USE) "" "*"')
    attrs = list_attrs(r)
    assert set(attrs) == {"Sent", "Drafts", "Trash", "Junk", "Archive"}, c.dialogue()
    assert "\\junk" in attrs["Junk"] and "\\drafts" in attrs["Drafts"], c.dialogue()
    c.ok("UNSUBSCRIBE AX")
    c.ok("SUBSCRIBE A/B")
    r = c.ok('LIST (SUBSCRIBED) "" "A*"')
    names = set(list_names(r))
    assert "A/B" in names and "AX" not in names, c.dialogue()
    r = c.ok('LIST "" ("A" "AX")')          # multiple patterns
    assert set(list_names(r)) == {"A", "AX"}, c.dialogue()
    # LIST-STATUS
    srv.deliver(user, message("one", to=user))
    srv.deliver(user, message("two", to=user))
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    append(c, "A/B", message("in ab", to=user))
    r = c.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    st = {}
    for s in r.of("STATUS"):
        name = s[0].decode() if isinstance(s[0], bytes) else s[0]
        st[name] = dict(zip(s[1][::2], s[1][1::2]))
    assert st.get("INBOX") == {"MESSAGES": "2", "UNSEEN": "1"}, c.dialogue()
    assert st.get("A/B") == {"MESSAGES": "1", "UNSEEN": "1"}, c.dialogue()
    assert st.get("AX") == {"MESSAGES": "0", "UNSEEN": "0"}, c.dialogue()


def test_list_extended_options(srv, user, clients):
    """RFC 5258: RECURSIVEMATCH with CHILDINFO, REMOTE, RETURN options, errors for unknown ones."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    for b in ("P", "P/Q", "R"):
        c.ok("CREATE", b)
    c.ok("UNSUBSCRIBE P")
    c.ok("SUBSCRIBE P/Q")
    c.ok("UNSUBSCRIBE R")
    # P is not subscribed, but its child is: listed with CHILDINFO under "%"
    r = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    lines = {l[2]: l for l in r.of("LIST")}
    assert "P" in lines and "R" not in lines, c.dialogue()
    assert "\\subscribed" not in {a.lower() for a in lines["P"][0]}, c.dialogue()
    assert lines["P"][3] == [b"CHILDINFO", [b"SUBSCRIBED"]], c.dialogue()
    # without RECURSIVEMATCH the unsubscribed parent is not listed
    assert "P" not in list_names(c.ok('LIST (SUBSCRIBED) "" "%"')), c.dialogue()
    # REMOTE is accepted (we have no remote mailboxes); RETURN options
    assert "R" in list_names(c.ok('LIST (REMOTE) "" "%"')), c.dialogue()
    attrs = list_attrs(c.ok('LIST "" "P*" RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)'))
    assert "\\haschildren" in attrs["P"] and "\\subscribed" in attrs["P/Q"], c.dialogue()
    # RFC 5258 3.1 and 3.2: unknown options and RECURSIVEMATCH alone are BAD
    c.expect("BAD", 'LIST (RECURSIVEMATCH) "" "%"')
    c.expect("BAD", 'LIST (FOOBAR) "" "%"')
    c.expect("BAD", 'LIST "" "%" RETURN (FOOBAR)')
    c.ok("NOOP")


def test_list_reference_name(srv, user, clients):
    """RFC 3501 6.3.8: the reference is prepended to the pattern; the usual form ends in the
    hierarchy delimiter ("A/" "%")."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    for b in ("A", "A/B", "A/B/C", "AX"):
        c.ok("CREATE", b)
    assert set(list_names(c.ok('LIST "A/" "%"'))) == {"A/B"}, c.dialogue()
    assert set(list_names(c.ok('LIST "A/" "*"'))) == {"A/B", "A/B/C"}, c.dialogue()
    assert set(list_names(c.ok('LIST "A/B/" "%"'))) == {"A/B/C"}, c.dialogue()
    assert set(list_names(c.ok('LIST "A" "X"'))) == {"AX"}, c.dialogue()


def test_status_items(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("status %d" % i, to=user, body="x" * (100 * (i + 1)) + "\r\n"))
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("SELECT INBOX")
    c.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    c.ok("UNSELECT")
    r = c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ)")
    s = r.of("STATUS")[0]
    assert s[0] == "INBOX", c.dialogue()
    d = dict(zip(s[1][::2], s[1][1::2]))
    rows = index_rows(srv, user)
    con = srv.index(user)
    uv, un, hm = con.execute("SELECT uidvalidity, uidnext, highestmodseq FROM mailboxes "
                             "WHERE name='INBOX'").fetchone()
    con.close()
    files = [os.path.getsize(message_file(srv, user, f)) for (_, f, _, _) in rows]
    assert d == {"MESSAGES": "3", "UIDNEXT": str(un), "UIDVALIDITY": str(uv), "UNSEEN": "2",
                 "SIZE": str(sum(files)), "HIGHESTMODSEQ": str(hm)}, c.dialogue()
    assert un == 4
    r = c.expect("NO", "STATUS NoSuch (MESSAGES)")
    c.expect("BAD", "STATUS INBOX (BOGUS)")
    c.expect("BAD", "STATUS INBOX")


# ------------------------------------------------------------------ APPEND

def test_append_flags_date_appenduid_multiappend(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    r = c.ok("SELECT INBOX")
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"".join(r.ok_codes())).group(1))
    msg = message("appended", to=user).encode()
    r = c.ok("APPEND INBOX (\\Seen \\Flagged $Work) \"14-Jul-2020 10:00:00 +0200\"", Lit(msg))
    m = re.match(r"\[APPENDUID (\d+) (\d+)\]", r.text)
    assert m and int(m.group(1)) == uv and int(m.group(2)) == 1, c.dialogue()
    assert r.exists() == 1, "appending to the selected mailbox reports EXISTS\n" + c.dialogue()
    f = c.ok("UID FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])").fetches()[1]
    assert set(f["FLAGS"]) - {"\\Recent"} == {"\\Seen", "\\Flagged", "$Work"}, c.dialogue()
    t = time.strptime(f["INTERNALDATE"].decode()[:20], "%d-%b-%Y %H:%M:%S")
    zone = f["INTERNALDATE"].decode()[21:]
    off = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (1 if zone[0] == "+" else -1)
    assert calendar.timegm(t) - off == calendar.timegm((2020, 7, 14, 8, 0, 0)), c.dialogue()
    assert f["BODY[]"] == msg and int(f["RFC822.SIZE"]) == len(msg), c.dialogue()
    # MULTIAPPEND with LITERAL+: one APPENDUID range, atomically
    c.ok("CREATE Multi")
    m1 = message("multi 1", to=user).encode()
    m2 = message("multi 2", to=user).encode()
    r = c.ok("APPEND Multi (\\Seen)", Lit(m1, plus=True), "(\\Draft) \"01-Jan-2021 00:00:00 +0000\"",
             Lit(m2, plus=True))
    m = re.match(r"\[APPENDUID (\d+) (\d+):(\d+)\]", r.text)
    assert m and (int(m.group(2)), int(m.group(3))) == (1, 2), c.dialogue()
    c.ok("SELECT Multi")
    fs = c.ok("FETCH 1:2 (FLAGS BODY.PEEK[])").fetches()
    assert fs[1]["BODY[]"] == m1 and fs[2]["BODY[]"] == m2, c.dialogue()
    assert norecent(fs[1]["FLAGS"]) == ["\\Seen"] and norecent(fs[2]["FLAGS"]) == ["\\Draft"], \
        c.dialogue()
    # MULTIAPPEND with synchronising literals
    r = c.ok("APPEND Multi", Lit(m1), Lit(m2))
    assert re.match(r"\[APPENDUID \d+ 3:4\]", r.text), c.dialogue()
    # TRYCREATE for a missing mailbox
    r = c.expect("NO", "APPEND NoSuchBox", Lit(msg))
    assert r.code == "TRYCREATE", c.dialogue()
    # invalid flag and invalid date
    c.expect("BAD", "APPEND INBOX (\\Bogus)", Lit(msg))
    c.expect("BAD", 'APPEND INBOX "32-Foo-2020 99:00:00 +0000"', Lit(msg))


def test_append_over_limit_is_toobig_before_continuation(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    limit = [int(x.split("=")[1]) for x in c.caps() if x.startswith("APPENDLIMIT=")][0]
    c.send("a1 APPEND INBOX {%d}\r\n" % (limit + 1))
    r = c.read_response()
    assert not r.startswith(b"+"), "continuation for an over-limit literal\n" + c.dialogue()
    assert re.match(rb"a1 (NO|BAD) \[TOOBIG\]", r), c.dialogue()
    assert c.alive(), c.dialogue()
    r = c.ok("STATUS INBOX (MESSAGES)")
    assert r.of("STATUS")[0][1] == ["MESSAGES", "0"], c.dialogue()
    # exactly at the limit is accepted (literal sent in full)
    body = b"Subject: big\r\n\r\n"
    body += b"y" * (limit - len(body) - 2) + b"\r\n"
    assert len(body) == limit
    r = c.ok("APPEND INBOX", Lit(body), timeout=120)
    assert "APPENDUID" in r.text, c.dialogue()


# ------------------------------------------------------------------ CHECK, CLOSE, UNSELECT, EXPUNGE

def test_check_close_unselect(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("close %d" % i, to=user))
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("SELECT INBOX")
    c.ok("CHECK")
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    r = c.ok("UNSELECT")
    assert not r.expunges(), c.dialogue()
    c.expect("BAD", "FETCH 1 FLAGS")
    r = c.ok("SELECT INBOX")
    assert r.exists() == 3, "UNSELECT must not expunge\n" + c.dialogue()
    r = c.ok("CLOSE")
    assert not r.expunges(), "CLOSE expunges silently\n" + c.dialogue()
    c.expect("BAD", "FETCH 1 FLAGS")
    r = c.ok("SELECT INBOX")
    assert r.exists() == 2, "CLOSE must expunge \\Deleted\n" + c.dialogue()
    assert len(index_rows(srv, user)) == 2
    # CLOSE after EXAMINE expunges nothing
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXAMINE INBOX")
    c.ok("CLOSE")
    assert c.ok("SELECT INBOX").exists() == 2, c.dialogue()


def file_present(srv, user, fn):
    """Whether the message file is still in the Maildir (new/ or cur/)."""
    try:
        message_file(srv, user, fn)
        return True
    except AssertionError:
        return False


def test_expunge_and_uid_expunge(srv, user, clients):
    for i in range(5):
        srv.deliver(user, message("exp %d" % i, to=user))
    rows = index_rows(srv, user)
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("SELECT INBOX")
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    r = c.ok("UID EXPUNGE 2")                 # only UID 2 (seq 2)
    assert r.expunges() == [2], c.dialogue()
    r = c.ok("UID EXPUNGE 4:5")               # not \Deleted: nothing
    assert r.expunges() == [], c.dialogue()
    r = c.ok("EXPUNGE")                       # UIDs 1 and 3: "1 EXPUNGE" twice
    assert r.expunges() == [1, 1], c.dialogue()
    f = c.ok("FETCH 1:* UID").fetches()
    assert [int(v["UID"]) for v in f.values()] == [4, 5], c.dialogue()
    left = index_rows(srv, user)
    assert [u for (u, _, _, _) in left] == [4, 5]
    # the files go after the answer (a pool job removes them), so wait for them, boundedly
    wait_until(lambda: not [fn for (u, fn, _, _) in rows if u in (1, 2, 3) and
                            file_present(srv, user, fn)],
               timeout=10, what="the files of UIDs 1-3 to be removed")
    for (u, fn, _, _) in rows:
        if u in (4, 5):
            message_file(srv, user, fn)
    r = c.ok("EXPUNGE")
    assert r.expunges() == [], c.dialogue()
    c.expect("BAD", "UID EXPUNGE")


# ------------------------------------------------------------------ SEARCH

SEARCH_MSGS = [
    # subject, from, body, extra headers, internal date, flags
    ("Quarterly report", "Alice Smith <alice@remote.test>", "The needle is here.\r\n",
     "X-Tag: blue\r\n", "01-Feb-2024 10:00:00 +0000", "\\Seen \\Flagged"),
    ("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Bob <bob@remote.test>", "nothing special\r\n",
     "", "15-Mar-2024 12:00:00 +0000", "$Work"),
    ("Lunch", "Carol <carol@other.test>", "Let's eat. " + "padding " * 300 + "\r\n",
     "X-Tag: red\r\n", "15-Mar-2024 23:30:00 +0000", "\\Answered"),
    ("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "alice@remote.test", "NEEDLE upper\r\n",
     "", "20-Apr-2024 08:00:00 +0000", "\\Deleted"),
    ("Draft thing", "Dan <dan@remote.test>", "draft body\r\n", "", "01-May-2024 08:00:00 +0000",
     "\\Draft"),
]


@pytest.fixture
def search_box(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    for subj, frm, body, extra, date, flags in SEARCH_MSGS:
        append(c, "INBOX", message(subj, frm=frm, to=user, body=body, extra_headers=extra),
               flags=flags, date=date)
    c.ok("SELECT INBOX")
    return c


def hits(r, kind="SEARCH"):
    out = r.of(kind)
    assert len(out) == 1, r
    return [int(x) for x in out[0] if isinstance(x, str) and x.isdigit()]


def test_search_flags_and_keys(search_box):
    c = search_box
    s = lambda *q: hits(c.ok("SEARCH", *q))
    assert s("ALL") == [1, 2, 3, 4, 5]
    assert s("SEEN") == [1] and s("UNSEEN") == [2, 3, 4, 5]
    assert s("FLAGGED") == [1] and s("UNFLAGGED") == [2, 3, 4, 5]
    assert s("ANSWERED") == [3] and s("DELETED") == [4] and s("DRAFT") == [5]
    assert s("UNDELETED") == [1, 2, 3, 5] and s("UNDRAFT") == [1, 2, 3, 4]
    assert s("KEYWORD $Work") == [2] and s("UNKEYWORD $Work") == [1, 3, 4, 5]
    assert s("KEYWORD $NeverUsed") == []
    # substrings, case-insensitive
    assert s('FROM "ALICE"') == [1, 4]
    assert s("FROM remote.test") == [1, 2, 4, 5]
    assert s('SUBJECT "quarterly REPORT"') == [1]
    assert s('BODY "needle"') == [1, 4]
    assert s('TEXT "needle"') == [1, 4]
    assert s('TEXT "x-tag: blue"') == [1]       # TEXT covers the header too
    assert s('BODY "x-tag"') == []               # BODY does not
    assert s('HEADER X-Tag "BLUE"') == [1]
    assert s('HEADER X-Tag ""') == [1, 3]        # empty string: header present
    assert s('HEADER Message-ID "@remote.test"') == [1, 2, 3, 4, 5]
    assert s('TO "' + "example.test" + '"') == [1, 2, 3, 4, 5]
    # dates (internal date, day resolution)
    assert s("SINCE 15-Mar-2024") == [2, 3, 4, 5]
    assert s("BEFORE 15-Mar-2024") == [1]
    assert s("ON 15-Mar-2024") == [2, 3]
    assert s("SINCE 16-Mar-2024 BEFORE 01-May-2024") == [4]
    # sizes
    sizes = {k: int(v["RFC822.SIZE"]) for k, v in c.ok("FETCH 1:* RFC822.SIZE").fetches().items()}
    assert s("LARGER %d" % (sizes[3] - 1)) == [3]
    assert s("SMALLER %d" % sizes[3]) == [1, 2, 4, 5]
    assert s("LARGER %d" % sizes[3]) == []
    # sets, NOT, OR, parentheses
    assert s("2:4") == [2, 3, 4] and s("1,5") == [1, 5] and s("4:*") == [4, 5]
    assert s("UID 2:3") == [2, 3] and s("UID 4:*") == [4, 5]
    assert s("NOT SEEN") == [2, 3, 4, 5]
    assert s("OR FLAGGED DRAFT") == [1, 5]
    assert s("OR FROM bob FROM carol") == [2, 3]
    assert s("NOT OR SEEN DELETED") == [2, 3, 5]
    assert s("(OR ANSWERED DRAFT) UNSEEN") == [3, 5]
    assert s("OR (FROM alice SEEN) (FROM carol)") == [1, 3]
    # UID SEARCH speaks UIDs: expunge 4 so sequence numbers and UIDs differ
    c.ok("EXPUNGE")
    assert hits(c.ok("UID SEARCH ALL")) == [1, 2, 3, 5]
    assert hits(c.ok("SEARCH ALL")) == [1, 2, 3, 4]
    assert hits(c.ok("UID SEARCH DRAFT")) == [5]
    assert hits(c.ok("SEARCH UID 5")) == [4]
    # errors
    c.expect("BAD", "SEARCH FROBNICATE")
    c.expect("BAD", "SEARCH SINCE notadate")
    c.expect("BAD", "SEARCH LARGER")
    r = c.expect("NO", "SEARCH CHARSET KOI8-R ALL")
    assert r.code and r.code.startswith("BADCHARSET"), c.dialogue()


def test_search_encoded_words_with_charset_utf8(search_box):
    c = search_box
    r = c.ok("SEARCH CHARSET UTF-8 SUBJECT", Lit("grüße aus".encode()))
    assert hits(r) == [2], c.dialogue()
    r = c.ok("SEARCH CHARSET UTF-8 SUBJECT", Lit("Köln".encode()))
    assert hits(r) == [2], c.dialogue()
    r = c.ok("SEARCH CHARSET UTF-8 SUBJECT", Lit("CAFé crème".encode()))
    assert hits(r) == [4], "ISO-8859-1 encoded word decoded to UTF-8\n" + c.dialogue()
    # the raw encoded form is not what is matched
    assert hits(c.ok('SEARCH SUBJECT "R3LDvMOfZ"')) == [], c.dialogue()


def test_search_decodes_body_transfer_encoding(srv, user, clients):
    """SEARCH BODY/TEXT match the decoded text of quoted-printable and base64 parts (RFC 9051
    6.4.4; the issue: 'substring match over decoded headers and text')."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    qp = ("From: a@remote.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
          "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
          "\r\n\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe vom Z=\r\nebra\r\n")
    b64body = base64.encodebytes("Hidden walrus in base64 text\r\n".encode()).decode()
    b6 = ("From: a@remote.test\r\nSubject: b64\r\nMIME-Version: 1.0\r\n"
          "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          + b64body.replace("\n", "\r\n"))
    append(c, "INBOX", qp)
    append(c, "INBOX", b6)
    c.ok("SELECT INBOX")
    assert hits(c.ok('SEARCH BODY "walrus"')) == [2], c.dialogue()
    assert hits(c.ok('SEARCH BODY "zebra"')) == [1], c.dialogue()
    assert hits(c.ok("SEARCH CHARSET UTF-8 BODY", Lit("schöne grüße".encode()))) == [1], \
        c.dialogue()
    append(c, "INBOX", message("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=", to=user))
    assert hits(c.ok("SEARCH CHARSET UTF-8 TEXT", Lit("aus münchen".encode()))) == [3], \
        "TEXT must match the decoded header too\n" + c.dialogue()


def test_esearch_and_searchres(search_box):
    c = search_box
    r = c.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    es = r.of("ESEARCH")
    assert len(es) == 1, c.dialogue()
    e = es[0]
    assert e[0] == ["TAG", r.tag.encode()], c.dialogue()   # the tag is a quoted string
    d = dict(zip(e[1::2], e[2::2]))
    assert d == {"MIN": "2", "MAX": "5", "COUNT": "4", "ALL": "2:5"}, c.dialogue()
    assert not r.of("SEARCH"), c.dialogue()
    r = c.ok("UID SEARCH RETURN (COUNT) FLAGGED")
    e = r.of("ESEARCH")[0]
    assert "UID" in e and e[-2:] == ["COUNT", "1"], c.dialogue()
    r = c.ok("SEARCH RETURN () OR SEEN DRAFT")        # () means ALL
    e = r.of("ESEARCH")[0]
    assert e[-2:] == ["ALL", "1,5"], c.dialogue()
    r = c.ok("SEARCH RETURN (COUNT) KEYWORD $NeverUsed")
    assert r.of("ESEARCH")[0][-2:] == ["COUNT", "0"], c.dialogue()
    # SEARCHRES: SAVE, then use $
    r = c.ok("SEARCH RETURN (SAVE) OR ANSWERED DRAFT")
    assert not r.of("SEARCH") and not r.of("ESEARCH"), c.dialogue()
    f = c.ok("FETCH $ (UID)").fetches()
    assert sorted(f) == [3, 5], c.dialogue()
    assert hits(c.ok("SEARCH $")) == [3, 5], c.dialogue()
    assert hits(c.ok("UID SEARCH UID $ ANSWERED")) == [3], c.dialogue()
    c.ok("STORE $ +FLAGS.SILENT (\\Flagged)")
    assert hits(c.ok("SEARCH FLAGGED")) == [1, 3, 5], c.dialogue()
    # RFC 5182 2.4: SAVE with MIN (and no ALL/COUNT) saves only the minimum
    r = c.ok("UID SEARCH RETURN (SAVE MIN) FLAGGED")
    assert r.of("ESEARCH")[0][-2:] == ["MIN", "1"], c.dialogue()
    assert sorted(c.ok("UID FETCH $ FLAGS").fetches()) == [1], c.dialogue()


# ------------------------------------------------------------------ FETCH

MULTIPART = (
    'From: "Ann Example" <ann@remote.test>\r\n'
    "To: Bob <bob@example.test>, carol@example.test\r\n"
    "Cc: Dan <dan@remote.test>\r\n"
    "Subject: Report\r\n"
    "Date: Tue, 01 Jul 2025 12:34:56 +0200\r\n"
    "Message-ID: <mp1@remote.test>\r\n"
    "In-Reply-To: <prev@remote.test>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    "\r\n"
    "This is the preamble.\r\n"
    "--XYZ\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Gr=C3=BC=C3=9Fe,\r\n"
    "see attachment.\r\n"
    "\r\n"
    "--XYZ\r\n"
    'Content-Type: application/octet-stream; name="data.bin"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    'Content-Disposition: attachment; filename="data.bin"\r\n'
    "\r\n"
    "AAECA/8Kc29tZSBieXRlcw==\r\n"
    "--XYZ--\r\n"
    "epilogue\r\n").encode()
PART1 = b"Gr=C3=BC=C3=9Fe,\r\nsee attachment.\r\n"
PART2 = b"AAECA/8Kc29tZSBieXRlcw=="   # the CRLF before the boundary belongs to it
PART2_BIN = b"\x00\x01\x02\x03\xff\nsome bytes"
PART2_MIME = (b'Content-Type: application/octet-stream; name="data.bin"\r\n'
              b"Content-Transfer-Encoding: base64\r\n"
              b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n')


def norm(x):
    """Case-fold strings and stringify numbers for a tolerant structural comparison."""
    if isinstance(x, list):
        return [norm(y) for y in x]
    if x is None:
        return None
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    return str(x).upper()


def test_fetch_items(srv, user, clients):
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    uid = append(c, "INBOX", MULTIPART, date="01-Jul-2025 10:34:56 +0000")
    c.ok("SELECT INBOX")
    hdr_end = MULTIPART.index(b"\r\n\r\n") + 4
    r = c.ok("FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY MODSEQ)")
    f = r.fetches()[1]
    assert norecent(f["FLAGS"]) == [] and int(f["UID"]) == uid, c.dialogue()
    assert f["INTERNALDATE"] == b"01-Jul-2025 10:34:56 +0000", c.dialogue()
    assert int(f["RFC822.SIZE"]) == len(MULTIPART), c.dialogue()
    assert int(f["MODSEQ"][0]) > 0, c.dialogue()
    ann = [[b"Ann Example", None, b"ann", b"remote.test"]]
    assert f["ENVELOPE"] == [
        b"Tue, 01 Jul 2025 12:34:56 +0200", b"Report", ann, ann, ann,
        [[b"Bob", None, b"bob", b"example.test"], [None, None, b"carol", b"example.test"]],
        [[b"Dan", None, b"dan", b"remote.test"]], None, b"<prev@remote.test>",
        b"<mp1@remote.test>"], c.dialogue()
    p1 = ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE", len(PART1), 2]
    p2 = ["APPLICATION", "OCTET-STREAM", ["NAME", "data.bin"], None, None, "BASE64", len(PART2)]
    expect_bs = [p1 + [None, None, None, None],
                 p2 + [None, ["ATTACHMENT", ["FILENAME", "data.bin"]], None, None],
                 "MIXED", ["BOUNDARY", "XYZ"], None, None, None]
    assert norm(f["BODYSTRUCTURE"]) == norm(expect_bs), c.dialogue()
    assert norm(f["BODY"]) == norm([p1, p2, "MIXED"]), c.dialogue()
    # peeks and sections (no \Seen yet)
    r = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[HEADER.FIELDS.NOT "
             "(Subject From To Cc Date Message-ID In-Reply-To MIME-Version)] "
             "BODY.PEEK[TEXT]<0.10> BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2.MIME] "
             "BODY.PEEK[HEADER] BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[1] BINARY.SIZE[2] "
             "BODY.PEEK[TEXT]<100000.5>)")
    f = r.fetches()[1]
    assert f["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b'From: "Ann Example" <ann@remote.test>\r\nSubject: Report\r\n\r\n'), c.dialogue()
    assert f["BODY[HEADER.FIELDS.NOT (SUBJECT FROM TO CC DATE MESSAGE-ID IN-REPLY-TO " \
             "MIME-VERSION)]"] == b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n', \
        c.dialogue()
    assert f["BODY[TEXT]<0>"] == MULTIPART[hdr_end:hdr_end + 10], c.dialogue()
    assert f["BODY[TEXT]<100000>"] == b"", c.dialogue()
    assert f["BODY[1]"] == PART1 and f["BODY[2]"] == PART2, c.dialogue()
    assert f["BODY[2.MIME]"] == PART2_MIME, c.dialogue()
    assert f["BODY[HEADER]"] == MULTIPART[:hdr_end], c.dialogue()
    assert f["BINARY[1]"] == "Grüße,\r\nsee attachment.\r\n".encode(), c.dialogue()
    assert f["BINARY[2]"] == PART2_BIN, c.dialogue()
    assert int(f["BINARY.SIZE[1]"]) == len("Grüße,\r\nsee attachment.\r\n".encode()), c.dialogue()
    assert int(f["BINARY.SIZE[2]"]) == len(PART2_BIN), c.dialogue()
    assert b"~{%d}" % len(PART2_BIN) in b"".join(r.untagged), \
        "BINARY with a NUL must be a literal8\n" + c.dialogue()
    assert norecent(c.ok("FETCH 1 FLAGS").fetches()[1]["FLAGS"]) == [], \
        "PEEK set \\Seen\n" + c.dialogue()
    # RFC822.HEADER does not set \Seen; RFC822, RFC822.TEXT and BODY[...] do
    f = c.ok("FETCH 1 RFC822.HEADER").fetches()[1]
    assert f["RFC822.HEADER"] == MULTIPART[:hdr_end], c.dialogue()
    assert norecent(c.ok("FETCH 1 FLAGS").fetches()[1]["FLAGS"]) == [], c.dialogue()
    f = c.ok("FETCH 1 BODY[TEXT]<0.10>").fetches()[1]
    assert f["BODY[TEXT]<0>"] == MULTIPART[hdr_end:hdr_end + 10], c.dialogue()
    assert norecent(f.get("FLAGS", ["?"])) == ["\\Seen"], \
        "non-PEEK fetch reports the new \\Seen\n" + c.dialogue()
    c.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    f = c.ok("FETCH 1 RFC822").fetches()[1]
    assert f["RFC822"] == MULTIPART and norecent(f.get("FLAGS", ["?"])) == ["\\Seen"], \
        c.dialogue()
    c.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    f = c.ok("FETCH 1 RFC822.TEXT").fetches()[1]
    assert f["RFC822.TEXT"] == MULTIPART[hdr_end:], c.dialogue()
    c.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    f = c.ok("FETCH 1 BINARY[1]").fetches()[1]
    assert "\\Seen" in c.ok("FETCH 1 FLAGS").fetches()[1]["FLAGS"], c.dialogue()
    # macros
    f = c.ok("FETCH 1 ALL").fetches()[1]
    assert set(f) >= {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}, c.dialogue()
    f = c.ok("FETCH 1 FAST").fetches()[1]
    assert set(f) >= {"FLAGS", "INTERNALDATE", "RFC822.SIZE"} and "ENVELOPE" not in f, c.dialogue()
    f = c.ok("FETCH 1 FULL").fetches()[1]
    assert "BODY" in f and "ENVELOPE" in f, c.dialogue()
    # UID FETCH always carries the UID
    f = c.ok("UID FETCH %d FLAGS" % uid).fetches()[1]
    assert int(f["UID"]) == uid, c.dialogue()
    # bad items and sets
    c.expect("BAD", "FETCH 1 (FLAGS BOGUS)")
    c.expect("BAD", "FETCH 1 BODY[TEXT]<5.0>")
    # a message number past the end names nothing (RFC 9051 would rather have BAD here)
    r = c.cmd("FETCH 99 FLAGS")
    assert r.status == "OK" and not r.fetches(), c.dialogue()
    r = c.ok("UID FETCH 99 FLAGS")        # UID sets may name nothing
    assert not r.fetches(), c.dialogue()


def test_fetch_structure_with_header_fields_comes_from_the_index(srv, user, clients):
    """BODYSTRUCTURE, BODY and ENVELOPE together with header sections (imaptest's FETCH) are
    answered from the structure and header section the index keeps, as each alone is: the file
    is not read (here it is overwritten, same size, after the first look; the answers stay)."""
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    append(c, "INBOX", MULTIPART)
    c.ok("SELECT INBOX")
    items = ("(UID BODYSTRUCTURE BODY ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject From)] "
             "RFC822.HEADER BODY.PEEK[HEADER])")
    first = c.ok("FETCH 1 " + items).fetches()[1]
    alone = c.ok("FETCH 1 (BODYSTRUCTURE BODY ENVELOPE)").fetches()[1]
    for k in ("BODYSTRUCTURE", "BODY", "ENVELOPE"):
        assert first[k] == alone[k], c.dialogue()
    hdr_end = MULTIPART.index(b"\r\n\r\n") + 4
    assert first["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b'From: "Ann Example" <ann@remote.test>\r\nSubject: Report\r\n\r\n'), c.dialogue()
    assert first["RFC822.HEADER"] == first["BODY[HEADER]"] == MULTIPART[:hdr_end], c.dialogue()
    ((_, fn, _, _),) = index_rows(srv, user)
    path = message_file(srv, user, fn)
    with open(path, "r+b") as f:
        f.write(b"X" * len(MULTIPART))
    again = c.ok("FETCH 1 " + items).fetches()[1]
    assert again == first, c.dialogue()
    # what needs the text still reads the file
    body = c.ok("FETCH 1 (BODYSTRUCTURE BODY.PEEK[])").fetches()[1]
    assert body["BODY[]"] == b"X" * len(MULTIPART), c.dialogue()


def test_rfc822_size_and_body_equal_stored_file(srv, user, clients):
    msgs = [message("size %d" % i, to=user, body=("line %d\r\n" % i) * (i * 50 + 1))
            for i in range(4)]
    for m in msgs:
        srv.deliver(user, m)
    big = message("big one", to=user, body=("z" * 76 + "\r\n") * 20000)   # ~1.5 MB, streamed
    srv.deliver(user, big)
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    append(c, "INBOX", message("appended", to=user))
    c.ok("SELECT INBOX")
    rows = index_rows(srv, user)
    assert len(rows) == 6
    f = c.ok("FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])", timeout=60).fetches()
    for (uid, fn, _, size) in rows:
        path = message_file(srv, user, fn)
        data = open(path, "rb").read()
        got = [v for v in f.values() if int(v["UID"]) == uid][0]
        assert int(got["RFC822.SIZE"]) == len(data) == size, (uid, c.dialogue())
        assert got["BODY[]"] == data, uid
    # delivered messages carry the Return-Path and Received lines the contract names
    assert f[1]["BODY[]"].startswith(b"Return-Path: <sender@remote.test>\r\nReceived: from ")


# ------------------------------------------------------------------ STORE

def test_store_flags_keywords_unchangedsince(srv, user, clients):
    for i in range(3):
        srv.deliver(user, message("store %d" % i, to=user))
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("SELECT INBOX")
    r = c.ok("STORE 1 +FLAGS (\\Flagged \\Answered)")
    assert set(norecent(r.fetches()[1]["FLAGS"])) == {"\\Flagged", "\\Answered"}, c.dialogue()
    r = c.ok("STORE 1 -FLAGS (\\Answered)")
    assert norecent(r.fetches()[1]["FLAGS"]) == ["\\Flagged"], c.dialogue()
    r = c.ok("STORE 1:2 FLAGS (\\Seen)")
    assert norecent(r.fetches()[1]["FLAGS"]) == ["\\Seen"] and \
        norecent(r.fetches()[2]["FLAGS"]) == ["\\Seen"], \
        c.dialogue()
    r = c.ok("STORE 3 +FLAGS.SILENT (\\Draft)")
    assert not r.fetches(), ".SILENT must not answer FETCH\n" + c.dialogue()
    assert norecent(c.ok("FETCH 3 FLAGS").fetches()[3]["FLAGS"]) == ["\\Draft"], c.dialogue()
    # keywords: stored, listed in FLAGS/PERMANENTFLAGS after re-select, removable
    r = c.ok("STORE 2 +FLAGS ($Label1 Junk-ish)")
    assert set(norecent(r.fetches()[2]["FLAGS"])) == {"\\Seen", "$Label1", "Junk-ish"}, c.dialogue()
    r = c.ok("SELECT INBOX")
    assert {"$Label1", "Junk-ish"} <= set(r.of("FLAGS")[0][0]), c.dialogue()
    assert set(norecent(c.ok("FETCH 2 FLAGS").fetches()[2]["FLAGS"])) == {"\\Seen", "$Label1",
                                                                   "Junk-ish"}, c.dialogue()
    r = c.ok("STORE 2 -FLAGS (Junk-ish)")
    assert set(norecent(r.fetches()[2]["FLAGS"])) == {"\\Seen", "$Label1"}, c.dialogue()
    # the store holds the flags (maildir info and the index agree)
    flagsrow = {u: fl for (u, _, fl, _) in index_rows(srv, user)}
    assert flagsrow[1] != 0 and flagsrow[3] != 0
    # invalid flags
    c.expect("BAD", "STORE 1 +FLAGS (\\Bogus)")
    c.expect("BAD", "STORE 1 FROB (\\Seen)")
    # CONDSTORE: UNCHANGEDSINCE -> MODIFIED
    c.ok("ENABLE CONDSTORE")
    f = c.ok("FETCH 1:3 (MODSEQ)").fetches()
    ms = {k: int(v["MODSEQ"][0]) for k, v in f.items()}
    r = c.ok("STORE 2 +FLAGS (\\Answered)")
    new2 = int(r.fetches()[2]["MODSEQ"][0])
    assert new2 > ms[2], c.dialogue()
    limit = max(ms[1], ms[3])
    assert limit < new2
    r = c.ok("STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Deleted)" % limit)
    assert r.code == "MODIFIED 2", c.dialogue()
    f = c.ok("FETCH 1:3 FLAGS").fetches()
    assert "\\Deleted" in f[1]["FLAGS"] and "\\Deleted" in f[3]["FLAGS"], c.dialogue()
    assert "\\Deleted" not in f[2]["FLAGS"], c.dialogue()
    r = c.ok("UID STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % new2)
    assert r.code is None, c.dialogue()
    assert "\\Flagged" in c.ok("FETCH 2 FLAGS").fetches()[2]["FLAGS"], c.dialogue()


# ------------------------------------------------------------------ COPY / MOVE

def test_copy_and_move_with_copyuid(srv, user, clients):
    for i in range(4):
        srv.deliver(user, message("move %d" % i, to=user))
    c = Imap(srv)
    clients.append(c)
    c.login(user)
    c.ok("CREATE Dest")
    uv = int(c.ok("STATUS Dest (UIDVALIDITY)").of("STATUS")[0][1][1])
    r = c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS.SILENT (\\Flagged $Keep)")
    orig = c.ok("FETCH 1:4 BODY.PEEK[]").fetches()
    r = c.ok("COPY 1:2 Dest")
    assert r.code == "COPYUID %d 1:2 1:2" % uv, c.dialogue()
    r = c.ok("UID COPY 4 Dest")
    assert r.code == "COPYUID %d 4 3" % uv, c.dialogue()
    r = c.ok("MOVE 3 Dest")
    cu = [u for u in r.untagged if b"[COPYUID " in u]
    assert cu and re.search(rb"\[COPYUID %d 3 4\]" % uv, cu[0]), c.dialogue()
    assert r.expunges() == [3], c.dialogue()
    r = c.ok("UID MOVE 2 Dest")
    assert r.expunges() == [2], c.dialogue()
    assert any(re.search(rb"\[COPYUID %d 2 5\]" % uv, u) for u in r.untagged), c.dialogue()
    f = c.ok("FETCH 1:* UID").fetches()
    assert sorted(int(v["UID"]) for v in f.values()) == [1, 4], c.dialogue()
    r = c.expect("NO", "COPY 1 NoSuchBox")
    assert r.code == "TRYCREATE", c.dialogue()
    r = c.expect("NO", "MOVE 1 NoSuchBox")
    assert r.code == "TRYCREATE", c.dialogue()
    c.ok("SELECT Dest")
    f = c.ok("UID FETCH 1:* (FLAGS BODY.PEEK[])").fetches()
    byuid = {int(v["UID"]): v for v in f.values()}
    assert sorted(byuid) == [1, 2, 3, 4, 5], c.dialogue()
    assert byuid[1]["BODY[]"] == orig[1]["BODY[]"] and byuid[3]["BODY[]"] == orig[4]["BODY[]"]
    assert byuid[4]["BODY[]"] == orig[3]["BODY[]"] and byuid[5]["BODY[]"] == orig[2]["BODY[]"]
    assert set(norecent(byuid[1]["FLAGS"])) == {"\\Flagged", "$Keep"}, \
        "COPY keeps flags\n" + c.dialogue()
    assert len(index_rows(srv, user, "Dest")) == 5 and len(index_rows(srv, user)) == 2
