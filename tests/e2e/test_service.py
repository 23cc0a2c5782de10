"""The operator's kit (issue 14): `meson install` yields the binary, the systemd unit, the man
pages and a default configuration; the unit passes `systemd-analyze verify`; `postino serve`
speaks the service manager's notify protocol (READY=1, RELOADING=1, STOPPING=1)."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from conftest import wait_until
from postino_server import BIN, Server

BUILD_DIR = os.path.dirname(os.path.abspath(BIN))


@pytest.fixture(scope="module")
def destdir():
    """`meson install --destdir` of the build that made POSTINO_BIN (no rebuild)."""
    d = tempfile.mkdtemp(prefix="postino-destdir-")
    cp = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--destdir", d, "--no-rebuild",
                         "--quiet"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    yield d
    shutil.rmtree(d, ignore_errors=True)


def installed(destdir, suffix):
    """Every installed file whose path ends with suffix."""
    found = []
    for root, _, files in os.walk(destdir):
        for f in files:
            p = os.path.join(root, f)
            if p.endswith(suffix):
                found.append(p)
    return found


def test_install_yields_binary_unit_man_pages_and_default_config(destdir):
    bins = [p for p in installed(destdir, "/postino") if "/bin/" in p or "/sbin/" in p]
    assert len(bins) == 1 and os.access(bins[0], os.X_OK), bins
    units = installed(destdir, "/systemd/system/postino.service")
    assert len(units) == 1, units
    assert installed(destdir, "/man8/postino.8") and installed(destdir, "/man5/postino.conf.5")
    confs = installed(destdir, "/postino/postino.conf")
    assert len(confs) == 1 and "/etc/postino/" in confs[0], confs
    assert os.stat(confs[0]).st_mode & 0o777 == 0o640
    unit = open(units[0]).read()
    # the unit runs the installed binary with the installed configuration
    start = re.search(r"^ExecStart=(\S+) serve --config (\S+)$", unit, re.M)
    assert start, unit
    assert os.path.join(destdir, start.group(1).lstrip("/")) == bins[0]
    assert os.path.join(destdir, start.group(2).lstrip("/")) == confs[0]
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN CAP_DAC_OVERRIDE"):
        assert line + "\n" in unit, line
    # the data directory of the default configuration is the one the unit may write
    conf = open(confs[0]).read()
    data_dir = re.search(r"^data_dir = (\S+)$", conf, re.M).group(1)
    assert "ReadWritePaths=%s\n" % data_dir in unit
    # the default configuration is valid as installed
    cp = subprocess.run([bins[0], "config", "show", "--config", confs[0]], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert re.search(r"^smtp.listen = \*$", cp.stdout, re.M), cp.stdout


def test_reinstall_keeps_an_edited_configuration(destdir):
    conf = installed(destdir, "/postino/postino.conf")[0]
    with open(conf, "a") as f:
        f.write("# edited by the operator\n")
    cp = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--destdir", destdir,
                         "--no-rebuild", "--quiet"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert open(conf).read().endswith("# edited by the operator\n")


def test_unit_passes_systemd_analyze_verify(destdir, tmp_path):
    unit = open(installed(destdir, "/systemd/system/postino.service")[0]).read()
    # the binary is looked for where the unit says; point it into the destdir
    binpath = re.search(r"^ExecStart=(\S+) ", unit, re.M).group(1)
    copy = tmp_path / "postino.service"
    copy.write_text(unit.replace(binpath, os.path.join(destdir, binpath.lstrip("/"))))
    cp = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and cp.stderr == "" and cp.stdout == "", cp.stdout + cp.stderr


@pytest.mark.parametrize("page", ["/man8/postino.8", "/man5/postino.conf.5"])
def test_man_pages_render_without_warnings(destdir, page):
    path = installed(destdir, page)[0]
    cp = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    cp = subprocess.run(["man", "-l", path], capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert "NAME" in cp.stdout and "SEE ALSO" in cp.stdout


def test_conf_man_page_lists_every_setting(destdir):
    """postino.conf(5) names every global setting `config show` prints."""
    page = open(installed(destdir, "/man5/postino.conf.5")[0]).read()
    cp = subprocess.run([BIN, "config", "show", "--config",
                         installed(destdir, "/postino/postino.conf")[0]],
                        capture_output=True, text=True, timeout=30)
    keys = set(re.findall(r"^([a-z_0-9]+) =", cp.stdout, re.M))
    assert len(keys) > 30
    missing = sorted(k for k in keys if "\\fB%s\\fR" % k not in page)
    assert missing == []


def notify_socket(tmp_path, abstract=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "@postino-test-%d-%d" % (os.getpid(), id(s))
        s.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        s.bind(name)
    s.settimeout(40)
    return s, name


def first_state(sock):
    """The first state postino sends. The harness's own commands (Server runs the CLI with the
    same environment) may send a bare READY=1 first on this machine; serve's always carries a
    STATUS line."""
    while True:
        msg = sock.recv(4096).decode()
        if msg != "READY=1":
            return msg


def started_workers(srv):
    return open(srv.log.name).read().count("event=worker-started")


def test_sd_notify_ready_reloading_stopping(tmp_path):
    sock, name = notify_socket(tmp_path)
    os.environ["NOTIFY_SOCKET"] = name
    try:
        srv = Server(extra_conf="workers = 2", wait_for=())
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        msg = first_state(sock)
        # READY=1 comes once both workers accept: their start lines are already logged, and
        # the ports greet
        assert msg.split("\n")[0] == "READY=1", msg
        assert started_workers(srv) == 2
        with socket.create_connection(("127.0.0.1", srv.port("imap")), 5) as c:
            c.settimeout(5)
            assert c.recv(100).startswith(b"* OK")
        os.kill(srv.proc.pid, signal.SIGHUP)
        msg = sock.recv(4096).decode()
        assert msg.split("\n")[0] == "RELOADING=1", msg
        assert re.search(r"^MONOTONIC_USEC=\d+$", msg, re.M), msg
        msg = sock.recv(4096).decode()
        assert msg.split("\n")[0] == "READY=1", msg
        assert started_workers(srv) == 4      # the new generation's two workers
        # a reload that fails keeps the old configuration and says READY=1 again
        with open(os.path.join(srv.data, "postino.conf"), "a") as f:
            f.write("no_such_setting = 1\n")
        os.kill(srv.proc.pid, signal.SIGHUP)
        assert sock.recv(4096).decode().startswith("RELOADING=1\n")
        msg = sock.recv(4096).decode()
        assert msg.startswith("READY=1\nSTATUS=reload failed"), msg
        os.kill(srv.proc.pid, signal.SIGTERM)
        assert sock.recv(4096).decode().split("\n")[0] == "STOPPING=1"
        assert srv.proc.wait(40) == 0
    finally:
        srv.stop()
        sock.close()


def test_sd_notify_abstract_socket(tmp_path):
    sock, name = notify_socket(tmp_path, abstract=True)
    os.environ["NOTIFY_SOCKET"] = name
    try:
        srv = Server(wait_for=())
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        assert first_state(sock).startswith("READY=1\nSTATUS=")
    finally:
        srv.stop()
        sock.close()


def test_unit_capabilities_suffice_to_serve_clean_and_stop(destdir):
    """With only the unit's capability bounding set, the master (root, run_user postino)
    takes back a system.db left to run_user, starts its workers, removes interrupted receptions
    from the run_user-owned tmp/ and stops its workers on SIGTERM."""
    unit = open(installed(destdir, "/systemd/system/postino.service")[0]).read()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
    srv = Server(wait_for=("imap",))
    try:
        run_user = re.search(r"^run_user = (\S+)", open(os.path.join(srv.data,
                                                                      "postino.conf")).read(),
                             re.M).group(1)
        assert run_user == "postino"
        os.killpg(srv.proc.pid, signal.SIGTERM)
        assert srv.proc.wait(40) == 0
        # as installed, the configuration is root's, outside the data directory
        conf = os.path.join(srv.dir, "etc-postino.conf")
        shutil.copy(os.path.join(srv.data, "postino.conf"), conf)
        leftover = os.path.join(srv.data, "tmp", "in.12345.leftover")
        subprocess.run(["setpriv", "--reuid", run_user, "--regid", run_user, "--clear-groups",
                        "touch", leftover], check=True)
        sysdb = os.path.join(srv.data, "system.db")
        pw = pwd.getpwnam(run_user)
        os.chown(sysdb, pw.pw_uid, pw.pw_gid)
        srv.proc = subprocess.Popen(["setpriv", "--bounding-set", bounding, "--inh-caps=-all",
                                     "--", BIN, "serve", "--config", conf], stdout=srv.log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        srv.wait_ready()
        wait_until(lambda: started_workers(srv) == 4, what="the workers started")
        assert not os.path.exists(leftover)
        st = os.stat(sysdb)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, pw.pw_gid, 0o640)
        srv.proc.send_signal(signal.SIGTERM)     # the master alone, as systemd's KillMode=mixed
        assert srv.proc.wait(40) == 0
        log = open(srv.log.name).read()
        assert log.count("event=worker-stopped") == 4, log
    finally:
        srv.stop()
