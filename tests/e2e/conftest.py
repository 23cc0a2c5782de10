"""End-to-end test fixtures for postino: a test CA, certificates, a data dir made with
`postino quickstart`, accounts made with the CLI, and a running `postino serve`.

Run:  POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q tests/e2e
(./run-tests.sh sets POSTINO_BIN to the build it makes; the suite names no build path itself.)
"""
import os
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time

from queuehelp import shared_resolver_conf
import uuid

import pytest

HOW_TO_RUN = ("POSTINO_BIN must name the postino binary under test, e.g.\n"
              "  POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q tests/e2e\n"
              "(./run-tests.sh builds postino and sets it)")


POSTINO_BIN = os.path.abspath(os.environ["POSTINO_BIN"]) if os.environ.get("POSTINO_BIN") else None

HOST = "mail.example.test"
DOMAIN = "example.test"
OTHER_HOST = "mx.other.test"
OTHER_DOMAIN = "other.test"
CATCH_DOMAIN = "catchall.test"

# name -> password (all in hosted domains, created in every server instance)
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
    "carol@example.test": "carol-Secret-3",
    "dave@other.test": "dave-Secret-4",
    "catcher@example.test": "catcher-Secret-5",
    "crash@example.test": "crash-Secret-6",
    "r1@example.test": "r-Secret", "r2@example.test": "r-Secret",
    "r3@example.test": "r-Secret", "r4@example.test": "r-Secret",
    "r5@example.test": "r-Secret", "r6@example.test": "r-Secret",
}
ALIASES = {
    "team@example.test": ["alice@example.test", "bob@example.test", "dave@other.test"],
    "alice.alias@example.test": ["alice@example.test"],
    "@catchall.test": ["catcher@example.test"],
}

PORT_NAMES = {"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993,
              "pop3": 110, "pop3s": 995, "http": 80, "https": 443}

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def run(args, input=None, check=True, timeout=30):
    """Run a command, return CompletedProcess (text)."""
    cp = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError("command failed (%d): %s\nstdout:\n%s\nstderr:\n%s"
                             % (cp.returncode, " ".join(args), cp.stdout, cp.stderr))
    return cp


def postino(*args, input=None, check=True, timeout=30):
    return run([POSTINO_BIN, *args], input=input, check=check, timeout=timeout)


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def open_connections(port):
    """TCP connections on 127.0.0.1:port that the server's side still holds (listening sockets
    and TIME_WAIT left out): 0 once the server has closed every connection to that port."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if int(col[1].split(":")[1], 16) == port and col[3] not in ("0A", "06"):
                n += 1
    return n


def refuses(port):
    """Is 127.0.0.1:port refusing connections (every process closed its listening socket)?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_port_offset():
    for _ in range(200):
        off = 10000 + random.randrange(0, 1900) * 10   # below the ephemeral ports
        if all(port_free(off + p) for p in PORT_NAMES.values()):
            return off
    raise RuntimeError("no free port offset found")


# ---------------------------------------------------------------- certificates

def _openssl(*args, cwd):
    cp = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise AssertionError("openssl %s failed:\n%s" % (" ".join(args), cp.stderr))


def make_pki(d):
    """Test CA + a server cert for mail.example.test (+localhost, 127.0.0.1) + one for
    mx.other.test (SNI). Returns dict of paths."""
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, v) for k, v in {
        "ca_key": "ca.key", "ca_cert": "ca.pem",
        "main_key": "mail.key", "main_cert": "mail.pem",
        "other_key": "other.key", "other_cert": "other.pem"}.items()}
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", p["ca_key"], "-out", p["ca_cert"], "-days", "30",
             "-subj", "/CN=postino test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, san, key, cert in (
            (HOST, "DNS:%s,DNS:localhost,IP:127.0.0.1" % HOST, p["main_key"], p["main_cert"]),
            (OTHER_HOST, "DNS:%s" % OTHER_HOST, p["other_key"], p["other_cert"])):
        csr = cert + ".csr"
        ext = cert + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name, cwd=d)
        _openssl("x509", "-req", "-in", csr, "-CA", p["ca_cert"], "-CAkey", p["ca_key"],
                 "-CAcreateserial", "-days", "30", "-out", cert, "-extfile", ext, cwd=d)
    return p


_known_settings = {}


def knows_setting(data, name):
    """Does POSTINO_BIN have this setting? (The old main that new tests are checked against
    may predate it, and refuses a configuration that names it.)"""
    if POSTINO_BIN not in _known_settings:
        out = postino("config", "show", "--data", data, check=False).stdout
        _known_settings[POSTINO_BIN] = {l.split(" =")[0] for l in out.splitlines() if " =" in l}
    return name in _known_settings[POSTINO_BIN]


# ---------------------------------------------------------------- server instance

class Server:
    """One postino data dir + `postino serve` process."""

    def __init__(self, root, pki, extra_conf="", users=USERS, aliases=ALIASES, fast_logins=True,
                 env=None):
        self.root = root
        self.env = env   # extra environment of `postino serve` (e.g. an LD_PRELOAD shim)
        self.data = os.path.join(root, "data")
        self.pki = pki
        self.ca = pki["ca_cert"]
        self.offset = pick_port_offset()
        self.ports = {k: self.offset + v for k, v in PORT_NAMES.items()}
        self.smtp_port = self.ports["smtp"]
        self.submission_port = self.ports["submission"]
        self.submissions_port = self.ports["submissions"]
        self.users = dict(users)
        self.aliases = dict(aliases)
        self.log_path = os.path.join(root, "serve.log")
        self.conf = os.path.join(self.data, "postino.conf")
        self.proc = None
        self.logf = None
        self.starts = 0

        postino("quickstart", HOST, "--data", self.data, "--port-offset", str(self.offset))
        with open(self.conf, "a") as f:
            f.write("\n# --- appended by tests/e2e/conftest.py\n")
            f.write("tls_cert = %s\ntls_key = %s\n" % (pki["main_cert"], pki["main_key"]))
            f.write("tls_host = %s %s %s\n" % (OTHER_HOST, pki["other_cert"], pki["other_key"]))
            f.write("message_size_limit = 1M\nmax_recipients = 5\nmax_errors = 5\n")
            f.write("max_conn_per_ip = 10\n")
            if fast_logins:
                # the brute-force brake stays on but short, and the least delay of a failure
                # (2 s by default, tested in test_login_edges.py) is off, so tests of wrong
                # passwords stay quick
                f.write("login_delay_max = 1s\n")
                if knows_setting(self.data, "login_failure_delay"):
                    f.write("login_failure_delay = 0s\n")
            f.write(shared_resolver_conf())   # before extra_conf: a test's own wins
            f.write(extra_conf)
        postino("config", "check", "--data", self.data)
        for dom in (OTHER_DOMAIN, CATCH_DOMAIN):
            postino("domain", "add", dom, "--data", self.data)
        for addr, pw in self.users.items():
            postino("user", "add", addr, "--data", self.data, input=pw + "\n")
        for alias, targets in self.aliases.items():
            postino("alias", "add", alias, ",".join(targets), "--data", self.data)

    # -- process control
    def start(self, timeout=15):
        self.logf = open(self.log_path, "ab")
        self.logf.write(("\n==== start #%d %s\n" % (self.starts, time.ctime())).encode())
        self.logf.flush()
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen([POSTINO_BIN, "serve", "--data", self.data],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, start_new_session=True, env=env)
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("postino serve exited with %s during startup\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            return all(self.banner_ok(p) for p in
                       (self.smtp_port, self.submission_port)) and self.tls_ok(self.submissions_port)
        wait_until(ready, timeout, 0.05, "postino serve to accept connections")

    def banner_ok(self, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                # 554: up, and refusing this client (a milter's connect-stage reject)
                return s.recv(4)[:3] in (b"220", b"554")
        except OSError:
            return False

    def tls_ok(self, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with self.ssl_context().wrap_socket(s, server_hostname=HOST) as t:
                    t.settimeout(2)
                    return t.recv(4).startswith(b"220")
        except (OSError, ssl.SSLError):
            return False

    def children(self):
        """pids of the master's direct children."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        out = []
        try:
            for tid in os.listdir("/proc/%d/task" % self.proc.pid):
                with open("/proc/%d/task/%s/children" % (self.proc.pid, tid)) as f:
                    out += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
        return out

    def group_alive(self):
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        # zombies of our own child count as gone once reaped
        return True

    def stop(self, timeout=10):
        """SIGTERM the master; returns its exit status. Raises if it does not exit in time."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError("postino serve did not exit within %ss of SIGTERM\n%s"
                                 % (timeout, self.log_tail()))
        pgid = self.proc.pid
        # workers must go away too
        def gone():
            try:
                os.killpg(pgid, 0)
                return False
            except ProcessLookupError:
                return True
        try:
            wait_until(gone, timeout, 0.05, "workers to exit after SIGTERM")
        except AssertionError:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        finally:
            self.proc = None
            self.logf.close()
        return rc

    def kill_all(self):
        """kill -9 the whole process group (master and workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        pgid = self.proc.pid

        def gone():
            try:
                os.killpg(pgid, 0)
                return False
            except ProcessLookupError:
                return True
        wait_until(gone, 10, 0.02, "killed process group to vanish")
        self.proc = None
        self.logf.close()

    # -- logs
    def log_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log_tail(self, n=80):
        lines = self.log_bytes().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    def sanitizer_reports(self):
        text = self.log_bytes().decode("utf-8", "replace")
        return [m for m in SANITIZER_MARKERS if m in text]

    # -- TLS
    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    # -- store
    def maildir(self, addr, folder=""):
        local, dom = addr.lower().split("@")
        base = os.path.join(self.data, "mail", dom, local)
        return os.path.join(base, folder) if folder else base

    def maildir_files(self, addr, sub="new", folder=""):
        d = os.path.join(self.maildir(addr, folder), sub)
        try:
            return sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def all_message_files(self, addr):
        return self.maildir_files(addr, "new") + self.maildir_files(addr, "cur")

    def find_messages(self, addr, token):
        """files (new/ and cur/) of addr's INBOX containing token (bytes or str)."""
        if isinstance(token, str):
            token = token.encode()
        out = []
        for p in self.all_message_files(addr):
            try:
                with open(p, "rb") as f:
                    if token in f.read():
                        out.append(p)
            except FileNotFoundError:
                pass
        return out

    def grep_store(self, token):
        """every file anywhere under mail/ and queue/ (incl. tmp/) containing token."""
        if isinstance(token, str):
            token = token.encode()
        out = []
        for top in ("mail", "queue"):
            for dirpath, dirs, files in os.walk(os.path.join(self.data, top)):
                for n in files:
                    if n.endswith((".db", ".db-wal", ".db-shm", ".db-journal")):
                        continue
                    p = os.path.join(dirpath, n)
                    try:
                        with open(p, "rb") as f:
                            if token in f.read():
                                out.append(p)
                    except (FileNotFoundError, IsADirectoryError):
                        pass
        return out

    def index_query(self, addr, sql, args=()):
        path = os.path.join(self.maildir(addr), "index.db")
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def index_messages(self, addr, mailbox="INBOX"):
        return self.index_query(
            addr,
            "SELECT m.uid, m.filename, m.flags, m.modseq, m.internaldate, m.size "
            "FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = ? "
            "ORDER BY m.uid", (mailbox,))

    def index_row_for(self, addr, path):
        base = os.path.basename(path)
        key = base.split(":2,")[0]
        for row in self.index_messages(addr):
            fn = os.path.basename(row[1])
            if fn == base or fn.split(":2,")[0] == key:
                return row
        return None

    def queue_files(self):
        d = os.path.join(self.data, "queue")
        out = []
        for dirpath, dirs, files in os.walk(d):
            out += [os.path.join(dirpath, n) for n in files]
        return sorted(out)


# ---------------------------------------------------------------- fixtures

_live_servers = []


def let_workers_through(path):
    """As root, quickstart makes the workers run as the system user postino (issue 11): that
    user must be able to pass through the 0700 directories tests create (mkdtemp, tmp_path)
    on the way to a data directory. o+x only: it still cannot list them."""
    if os.geteuid() != 0:
        return
    path = os.path.abspath(str(path))
    while path not in ("/", "/tmp", tempfile.gettempdir()):
        st = os.stat(path)
        if st.st_uid == 0 and not st.st_mode & 0o001:
            os.chmod(path, (st.st_mode & 0o7777) | 0o001)
        path = os.path.dirname(path)


_own_basetemp = None


def pytest_configure(config):
    """POSTINO_BIN must be set (the suite names no build path). As root, tmp_path lives under a
    base of this session's own: pytest resets the shared /tmp/pytest-of-root to 0700 whenever
    another session starts, which would lock the workers' user out of a data directory in the
    middle of a test."""
    global _own_basetemp
    if not POSTINO_BIN:
        raise pytest.UsageError("POSTINO_BIN is not set. " + HOW_TO_RUN)
    if not os.access(POSTINO_BIN, os.X_OK):
        raise pytest.UsageError("POSTINO_BIN=%s is not an executable file. %s"
                                % (POSTINO_BIN, HOW_TO_RUN))
    if os.geteuid() == 0 and not config.option.basetemp:
        _own_basetemp = tempfile.mkdtemp(prefix="postino-pytest-")
        config.option.basetemp = _own_basetemp


def pytest_unconfigure(config):
    if _own_basetemp and not os.environ.get("POSTINO_KEEP"):
        shutil.rmtree(_own_basetemp, ignore_errors=True)


@pytest.fixture(autouse=True)
def _tmp_path_reachable(request):
    if "tmp_path" in request.fixturenames:
        let_workers_through(request.getfixturevalue("tmp_path"))
    yield


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="postino-e2e-")
    let_workers_through(d)
    yield d
    if os.environ.get("POSTINO_KEEP"):
        print("\nkept test dir", d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(workdir):
    return make_pki(os.path.join(workdir, "pki"))


def _check_bin():
    try:
        cp = subprocess.run([POSTINO_BIN, "--help"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail("POSTINO_BIN=%s not runnable: %s" % (POSTINO_BIN, e))
    if cp.returncode != 0:
        pytest.fail("%s --help exited %d" % (POSTINO_BIN, cp.returncode))


def start_server(root, pki, **kw):
    _check_bin()
    os.makedirs(root, exist_ok=True)
    srv = Server(root, pki, **kw)
    srv.start()
    _live_servers.append(srv)
    return srv


def finish_server(srv):
    try:
        if srv.proc is not None:
            rc = srv.stop(10)
            assert rc == 0, "postino serve exited %s after SIGTERM\n%s" % (rc, srv.log_tail())
        bad = srv.sanitizer_reports()
        assert not bad, "sanitizer reports in the server log: %s\n%s" % (bad, srv.log_tail(200))
    finally:
        if srv in _live_servers:
            _live_servers.remove(srv)


@pytest.fixture(scope="session")
def server(workdir, pki):
    srv = start_server(os.path.join(workdir, "main"), pki)
    yield srv
    finish_server(srv)


@pytest.fixture
def token():
    return "tok-" + uuid.uuid4().hex


# attach the server log written during a failed test to its report
@pytest.fixture(autouse=True)
def _server_log_marks(request):
    request.node._postino_log_marks = {id(s): len(s.log_bytes()) for s in _live_servers}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        marks = getattr(item, "_postino_log_marks", {})
        for s in list(_live_servers):
            data = s.log_bytes()[marks.get(id(s), 0):]
            text = data.decode("utf-8", "replace").splitlines()
            if len(text) > 150:
                text = ["... (%d lines cut)" % (len(text) - 150)] + text[-150:]
            rep.sections.append(("postino serve log (%s)" % s.log_path, "\n".join(text)))
