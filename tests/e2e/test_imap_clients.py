"""Real IMAP clients against postino (issue 3): mbsync (Debian package isync) synchronises a
mailbox both ways with a local Maildir; mutt reads a message and moves it, driven
non-interactively inside tmux. Each test is skipped when its program is not installed."""
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from test_imap_helpers import (Imap, _no_crash, append, clients, index_rows, message,
                               new_user, quote, session, srv, user, wait_until)

MBSYNC = shutil.which("mbsync")
MUTT = shutil.which("mutt")
TMUX = shutil.which("tmux")


# ------------------------------------------------------------------ mbsync

def mbsync_config(srv, addr, home):
    local = os.path.join(home, "Mail")
    os.makedirs(local, exist_ok=True)
    cfg = os.path.join(home, "mbsyncrc")
    with open(cfg, "w") as f:
        f.write("""IMAPAccount postino
Host localhost
Port %d
User %s
Pass %s
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN

IMAPStore remote
Account postino

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Projects
Create Both
Expunge Both
SyncState *
""" % (srv.port("imaps"), addr, srv.password, srv.ca, local, local))
    return cfg, local


def run_mbsync(cfg, home):
    cp = subprocess.run([MBSYNC, "-c", cfg, "-a"], capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, HOME=home))
    assert cp.returncode == 0, "mbsync failed (%d)\nstdout:\n%s\nstderr:\n%s" % (
        cp.returncode, cp.stdout, cp.stderr)
    return cp


def maildir_msgs(d):
    """{Message-ID: (path, flags)} of a local Maildir."""
    out = {}
    for sub in ("cur", "new"):
        p = os.path.join(d, sub)
        if not os.path.isdir(p):
            continue
        for n in os.listdir(p):
            data = open(os.path.join(p, n), "rb").read()
            m = re.search(rb"^Message-ID: (<[^>]+>)", data, re.M | re.I)
            flags = n.split(":2,")[1] if ":2," in n else ""
            out[m.group(1).decode()] = (os.path.join(p, n), flags)
    return out


def lf(b):
    """Compare modulo line ends and the X-TUID header mbsync writes into local copies."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", b.replace(b"\r\n", b"\n"))


def server_msgs(c, box):
    """{Message-ID: (uid, flags, body)} of a server mailbox."""
    r = c.ok("SELECT", quote(box))
    if r.exists() == 0:
        return {}
    out = {}
    for v in c.ok("UID FETCH 1:* (FLAGS BODY.PEEK[])").fetches().values():
        m = re.search(rb"^Message-ID: (<[^>]+>)", v["BODY[]"], re.M | re.I)
        out[m.group(1).decode()] = (int(v["UID"]), v["FLAGS"], v["BODY[]"])
    return out


@pytest.mark.skipif(MBSYNC is None, reason="mbsync not installed (apt-get install isync)")
def test_mbsync_synchronises_both_ways(srv, user, clients, tmp_path):
    home = str(tmp_path)
    ids = ["<mbs-%d-%s@remote.test>" % (i, uuid.uuid4().hex[:8]) for i in range(3)]
    for i, mid in enumerate(ids):
        srv.deliver(user, message("mbsync %d" % i, to=user, msgid=mid))
    c = session(srv, user, "imaps", clients)
    c.ok("CREATE Projects")
    pid = "<mbs-proj-%s@remote.test>" % uuid.uuid4().hex[:8]
    append(c, "Projects", message("project note", to=user, msgid=pid), flags="\\Flagged")
    cfg, local = mbsync_config(srv, user, home)

    # 1. first sync: server -> local, byte for byte
    run_mbsync(cfg, home)
    loc = maildir_msgs(os.path.join(local, "INBOX"))
    srvm = server_msgs(c, "INBOX")
    assert set(loc) == set(ids) == set(srvm), (loc, srvm)
    for mid in ids:     # mbsync keeps local files with LF line ends
        assert lf(open(loc[mid][0], "rb").read()) == lf(srvm[mid][2])
    proj = maildir_msgs(os.path.join(local, "Projects"))
    assert set(proj) == {pid} and "F" in proj[pid][1], proj

    # 2. changes on both sides
    seen_path, _ = loc[ids[0]]
    base = os.path.basename(seen_path).split(":2,")[0]
    os.rename(seen_path, os.path.join(local, "INBOX", "cur", base + ":2,S"))   # local: \Seen
    os.unlink(loc[ids[1]][0])                                                 # local: delete
    newid = "<mbs-local-%s@example.test>" % uuid.uuid4().hex[:8]
    newmsg = message("written locally", to=user, msgid=newid).encode()
    fn = "%d.%s.local:2,F" % (int(time.time()), uuid.uuid4().hex[:8])
    with open(os.path.join(local, "INBOX", "cur", fn), "wb") as f:
        f.write(newmsg)                                                        # local: new
    remoteid = "<mbs-remote-%s@remote.test>" % uuid.uuid4().hex[:8]
    srv.deliver(user, message("delivered later", to=user, msgid=remoteid))    # server: new
    c.ok("SELECT Projects")
    c.ok("STORE 1 +FLAGS.SILENT (\\Answered)")                                 # server: flag
    c.ok("UNSELECT")

    # 3. second sync
    run_mbsync(cfg, home)
    srvm = server_msgs(c, "INBOX")
    assert set(srvm) == {ids[0], ids[2], newid, remoteid}, sorted(srvm)
    assert "\\Seen" in srvm[ids[0]][1], srvm[ids[0]][1]
    assert "\\Flagged" in srvm[newid][1], srvm[newid][1]
    assert lf(srvm[newid][2]) == lf(newmsg), "APPENDed by mbsync (it adds X-TUID)"
    loc = maildir_msgs(os.path.join(local, "INBOX"))
    assert set(loc) == set(srvm), (sorted(loc), sorted(srvm))
    assert lf(open(loc[remoteid][0], "rb").read()) == lf(srvm[remoteid][2])
    proj = maildir_msgs(os.path.join(local, "Projects"))
    assert "R" in proj[pid][1] and "F" in proj[pid][1], proj
    assert len(index_rows(srv, user)) == 4, "the deleted message is expunged on the server"

    # 4. a third run changes nothing
    run_mbsync(cfg, home)
    assert set(server_msgs(c, "INBOX")) == set(srvm)
    assert set(maildir_msgs(os.path.join(local, "INBOX"))) == set(srvm)


# ------------------------------------------------------------------ mutt

def tmux(*args, check=True):
    return subprocess.run([TMUX, "-L", SOCK] + list(args), capture_output=True, text=True,
                          timeout=20, check=check)


SOCK = "postino-imap-test-%d" % os.getpid()


@pytest.mark.skipif(MUTT is None or TMUX is None,
                    reason="mutt or tmux not installed (apt-get install mutt tmux)")
def test_mutt_reads_and_moves_a_message(srv, user, clients, tmp_path):
    home = str(tmp_path)
    mid = "<mutt-%s@remote.test>" % uuid.uuid4().hex[:8]
    token = "mutt-body-token-" + uuid.uuid4().hex[:8]
    srv.deliver(user, message("for mutt", to=user, msgid=mid, body="Hello mutt, %s.\r\n" % token))
    srv.deliver(user, message("stays in inbox", to=user))
    out = os.path.join(home, "piped.txt")
    done = os.path.join(home, "done")
    rc = os.path.join(home, "muttrc")
    url = "imaps://%s@localhost:%d" % (user.replace("@", "%40"), srv.port("imaps"))
    with open(rc, "w") as f:
        f.write("""set folder="%(url)s/"
set spoolfile="+INBOX"
set imap_pass="%(pw)s"
set certificate_file="%(ca)s"
set ssl_ca_certificates_file="%(ca)s"
set ssl_verify_host=yes
set ssl_force_tls=yes
set imap_check_subscribed=no
set header_cache=""
set message_cachedir=""
set sort=date-sent
set confirmappend=no
set confirmcreate=no
set delete=yes
set move=no
set mark_old=no
set wait_key=no
set pipe_decode=no
set quit=yes
set beep=no
set timeout=1
set mail_check=1
""" % {"url": url, "pw": srv.password, "ca": srv.ca})
    # In the index, on the first message (date-sent: both equal dates, so search by subject):
    # limit to it, display it (reads -> \Seen), pipe it to a file, save it to =Archive (which
    # marks it deleted), sync (expunge) and quit.
    keys = ('push "<limit>~s for mutt<enter><display-message><exit>'
            '<pipe-message>cat > %s<enter>'
            '<save-message>=Archive<enter><sync-mailbox><quit>"' % out)
    cmd = "%s -n -F %s -e '%s'; touch %s" % (MUTT, rc, keys, done)
    env = "HOME=%s TERM=xterm LANG=C.UTF-8" % home
    tmux("kill-server", check=False)
    tmux("new-session", "-d", "-x", "160", "-y", "50", "env %s sh -c \"%s\"" % (
        env, cmd.replace('"', '\\"')))
    try:
        def finished():
            if os.path.exists(done):
                return True
            return False
        try:
            wait_until(finished, 60, 0.2, "mutt to finish")
        except AssertionError:
            screen = tmux("capture-pane", "-p", check=False).stdout
            raise AssertionError("mutt did not finish; screen:\n" + screen)
    finally:
        tmux("kill-server", check=False)
    assert os.path.exists(out), "mutt did not pipe the message"
    data = open(out, "rb").read()
    assert token.encode() in data and mid.encode() in data, data[:2000]
    c = session(srv, user, "imaps", clients)
    inbox = server_msgs(c, "INBOX")
    archive = server_msgs(c, "Archive")
    assert mid not in inbox, sorted(inbox)
    assert len(inbox) == 1, sorted(inbox)
    assert mid in archive, sorted(archive)
    assert token.encode() in archive[mid][2]
    assert "\\Seen" in archive[mid][1], archive[mid][1]
