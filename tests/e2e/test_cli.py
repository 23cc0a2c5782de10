"""CLI tests: quickstart, config check/show, domain/user/alias management."""
import os
import re
import subprocess

import pytest

from conftest import POSTINO_BIN, pick_port_offset, postino


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    cp = postino("quickstart", "mail.example.test", "--data", d,
                 "--port-offset", str(pick_port_offset()))
    assert "example.test" in cp.stdout
    return d


HELP_COMMANDS = [
    [], ["quickstart"], ["serve"], ["domain"], ["domain", "add"], ["domain", "list"],
    ["domain", "remove"], ["user"], ["user", "add"], ["user", "passwd"], ["user", "list"],
    ["user", "show"], ["user", "remove"], ["alias"], ["alias", "add"], ["alias", "list"],
    ["alias", "remove"], ["config"], ["config", "check"], ["config", "show"],
]


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_exits_0(cmd):
    cp = subprocess.run([POSTINO_BIN, *cmd, "--help"], capture_output=True, text=True, timeout=10)
    assert cp.returncode == 0, cp.stderr
    assert "usage" in cp.stdout.lower(), cp.stdout   # asked for: on stdout, not stderr


def test_unknown_command_is_usage_error(data):
    cp = postino("frobnicate", check=False)
    assert cp.returncode == 2
    cp = postino("user", "frobnicate", "--data", data, check=False)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    cp = postino("domain", "add", "--data", data, check=False)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)


def test_quickstart_layout(tmp_path):
    d = str(tmp_path / "qs")
    off = pick_port_offset()
    postino("quickstart", "mail.example.test", "--data", d, "--port-offset", str(off))
    for p in ("postino.conf", "system.db", "mail", "queue", "tmp",
              "certs/mail.example.test.pem", "certs/mail.example.test.key"):
        assert os.path.exists(os.path.join(d, p)), p
    key = os.path.join(d, "certs/mail.example.test.key")
    assert os.stat(key).st_mode & 0o077 == 0, "private key readable by others"
    show = postino("config", "show", "--data", d).stdout
    for name, port in (("smtp", 25), ("submission", 587), ("submissions", 465),
                       ("imap", 143), ("imaps", 993), ("pop3", 110), ("pop3s", 995)):
        assert re.search(r"^%s\.port = %d\b" % (name, off + port), show, re.M), (name, show)
    assert postino("domain", "list", "--data", d).stdout.split() == ["example.test"]
    # the certificate is for the host name
    cp = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "certs/mail.example.test.pem"),
                         "-noout", "-text"], capture_output=True, text=True)
    assert "mail.example.test" in cp.stdout


def test_quickstart_with_account_prints_password(tmp_path):
    d = str(tmp_path / "qs")
    cp = postino("quickstart", "mail.example.test", "--data", d, "--port-offset",
                 str(pick_port_offset()), "--account", "demo@example.test")
    m = re.search(r"password: (\S+)", cp.stdout)
    assert m and len(m.group(1)) >= 8, cp.stdout
    assert "demo@example.test" in postino("user", "list", "--data", d).stdout


def test_config_check_ok(data):
    cp = postino("config", "check", "--data", data)
    assert cp.returncode == 0


def test_config_show_marks_defaults(data):
    out = postino("config", "show", "--data", data).stdout
    assert re.search(r"line_length_limit = 2048\s+# default", out), out


@pytest.mark.parametrize("bad", ["this is not a setting", "frobnicate = 1", "smtp_port = abc",
                                 "message_size_limit = lots", "smtp.bare_lf = sometimes",
                                 "nosuchlistener.port = 25",
                                 # a per-listener value gets the checks of the global key
                                 "smtp.port = 70000", "imaps.line_length_limit = 10",
                                 "pop3.max_errors = 0", "line_length_limit = 1",
                                 # and a key the listener does not honour is refused there
                                 "imap.max_recipients = 3", "http.bare_lf = reject",
                                 "pop3s.data_timeout = 5m"])
def test_config_bad_line_reported_with_file_line(data, bad):
    conf = os.path.join(data, "postino.conf")
    with open(conf) as f:
        n = len(f.read().splitlines())
    with open(conf, "a") as f:
        f.write("# a comment\n\n%s\n" % bad)
    cp = postino("config", "check", "--data", data, check=False)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    want = "postino.conf:%d" % (n + 3)
    assert want in cp.stderr + cp.stdout, "expected %s in %r" % (want, cp.stderr)
    # serve refuses to start with the same message
    cp = subprocess.run([POSTINO_BIN, "serve", "--data", data], capture_output=True, text=True,
                        timeout=15)
    assert cp.returncode != 0 and want in cp.stderr + cp.stdout


def test_config_later_line_overrides(data):
    with open(os.path.join(data, "postino.conf"), "a") as f:
        f.write("max_recipients = 7\nsubmission.max_recipients = 9\n")
    out = postino("config", "show", "--data", data).stdout
    assert re.search(r"^smtp\.max_recipients = 7\b", out, re.M)
    assert re.search(r"^submission\.max_recipients = 9\b", out, re.M)


def test_config_show_lists_only_honoured_listener_keys(data):
    """Every setting shown for a listener is honoured there (issue 11): SMTP-only keys are not
    shown for IMAP/POP3/HTTP listeners, and a global SMTP key does not appear there either."""
    with open(os.path.join(data, "postino.conf"), "a") as f:
        f.write("max_recipients = 7\ndata_timeout = 2m\n")
    out = postino("config", "show", "--data", data).stdout
    assert re.search(r"^submissions\.max_recipients = 7\b", out, re.M), out
    assert re.search(r"^smtp\.data_timeout = 120s\b", out, re.M), out
    for name in ("imap", "imaps", "pop3", "pop3s", "http", "https"):
        for key in ("max_recipients", "data_timeout", "bare_lf"):
            assert not re.search(r"^%s\.%s =" % (name, key), out, re.M), (name, key)
        assert re.search(r"^%s\.port = " % name, out, re.M), name


def test_config_option(data):
    cp = postino("config", "check", "--config", os.path.join(data, "postino.conf"))
    assert cp.returncode == 0
    cp = postino("config", "check", "--config", os.path.join(data, "missing.conf"), check=False)
    assert cp.returncode == 1


def test_domain_commands(data):
    postino("domain", "add", "second.test", "--data", data)
    assert "second.test" in postino("domain", "list", "--data", data).stdout.split()
    # adding it again: a harmless no-op that says so, never a second entry
    cp = postino("domain", "add", "second.test", "--data", data, check=False)
    assert cp.returncode == 0 and "already hosted" in cp.stdout, cp.stdout + cp.stderr
    assert postino("domain", "list", "--data", data).stdout.split().count("second.test") == 1
    # a name that is no domain: refused (1), not a usage error (2)
    cp = postino("domain", "add", "not a domain", "--data", data, check=False)
    assert cp.returncode == 1 and "not a valid domain name" in cp.stderr, cp.stderr
    postino("domain", "remove", "second.test", "--data", data)
    assert "second.test" not in postino("domain", "list", "--data", data).stdout.split()


def test_user_commands(data):
    addr = "u1@example.test"
    postino("user", "add", addr, "--data", data, input="pw-one-Secret\n")
    assert addr in postino("user", "list", "--data", data).stdout.split()
    assert addr in postino("user", "list", "example.test", "--data", data).stdout
    show = postino("user", "show", addr, "--data", data).stdout
    assert addr in show and "pw-one-Secret" not in show
    md = os.path.join(data, "mail", "example.test", "u1")
    for sub in ("cur", "new", "tmp", ".Sent/cur", ".Drafts/new", ".Trash/tmp", ".Junk/cur",
                ".Archive/cur"):
        assert os.path.isdir(os.path.join(md, sub)), sub
    assert os.path.exists(os.path.join(md, "index.db"))
    # duplicate, unhosted domain, bad address
    assert postino("user", "add", addr, "--data", data, input="x-Secret-long\n",
                   check=False).returncode == 1
    assert postino("user", "add", "u@nothosted.test", "--data", data, input="x-Secret-long\n",
                   check=False).returncode == 1
    assert postino("user", "add", "no-at-sign", "--data", data, input="x-Secret-long\n",
                   check=False).returncode in (1, 2)
    # the password never appears in system.db in clear
    with open(os.path.join(data, "system.db"), "rb") as f:
        assert b"pw-one-Secret" not in f.read()
    postino("user", "passwd", addr, "--data", data, input="pw-two-Secret\n")
    postino("user", "remove", addr, "--data", data)
    assert addr not in postino("user", "list", "--data", data).stdout.split()
    assert postino("user", "show", addr, "--data", data, check=False).returncode == 1


@pytest.mark.parametrize("argv", [
    ["user", "add", "p@example.test", "secret-pw"],
    ["user", "add", "p@example.test", "--password", "secret-pw"],
    ["user", "add", "p@example.test", "--password=secret-pw"],
    ["user", "add", "p@example.test", "-p", "secret-pw"],
    ["user", "passwd", "p@example.test", "secret-pw"],
])
def test_password_never_accepted_on_argv(data, argv):
    cp = postino(*argv, "--data", data, input="", check=False)
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "p@example.test" not in postino("user", "list", "--data", data).stdout


def test_user_add_empty_password_refused(data):
    cp = postino("user", "add", "e@example.test", "--data", data, input="\n", check=False)
    assert cp.returncode == 1
    assert "e@example.test" not in postino("user", "list", "--data", data).stdout


def test_password_min_length(data):
    """A new password has at least password_min_length characters (default 8), counted as
    characters, not octets; --hash imports are exempt (issue 11 item 13)."""
    cp = postino("user", "add", "s@example.test", "--data", data, input="short-7\n",
                 check=False)
    assert cp.returncode == 1 and "shorter than 8 characters" in cp.stderr, cp.stderr
    assert "s@example.test" not in postino("user", "list", "--data", data).stdout
    postino("user", "add", "s@example.test", "--data", data, input="eight-88\n")
    cp = postino("user", "passwd", "s@example.test", "--data", data, input="1234567\n",
                 check=False)
    assert cp.returncode == 1 and "shorter than 8" in cp.stderr, cp.stderr
    with open(os.path.join(data, "postino.conf"), "a") as f:
        f.write("password_min_length = 12\n")
    cp = postino("user", "passwd", "s@example.test", "--data", data, input="eleven-chr1\n",
                 check=False)
    assert cp.returncode == 1 and "shorter than 12" in cp.stderr, cp.stderr
    postino("user", "passwd", "s@example.test", "--data", data, input="\u00e4" * 12 + "\n")
    h = subprocess.run(["openssl", "passwd", "-6", "pw"], capture_output=True,
                       text=True).stdout.strip()
    postino("user", "passwd", "s@example.test", "--hash", "{SHA512-CRYPT}" + h, "--data", data)


def test_password_two_stdin_lines_must_match(data):
    """One line, or two equal lines, on stdin; two differing lines are refused like the
    prompt refuses them (issue 11 item 13)."""
    cp = postino("user", "add", "t@example.test", "--data", data,
                 input="first-Secret-1\nsecond-Secret-2\n", check=False)
    assert cp.returncode == 1 and "differ" in cp.stderr, cp.stderr
    assert "t@example.test" not in postino("user", "list", "--data", data).stdout
    postino("user", "add", "t@example.test", "--data", data,
            input="same-Secret-1\nsame-Secret-1\n")
    cp = postino("user", "passwd", "t@example.test", "--data", data,
                 input="new-Secret-22\nnew-Secret-23\n", check=False)
    assert cp.returncode == 1 and "differ" in cp.stderr, cp.stderr
    postino("user", "passwd", "t@example.test", "--data", data, input="new-Secret-22\n")


def test_user_add_hash_import(data):
    h = subprocess.run(["openssl", "passwd", "-6", "pw"], capture_output=True, text=True).stdout.strip()
    postino("user", "add", "h@example.test", "--hash", "{SHA512-CRYPT}" + h, "--data", data)
    assert "h@example.test" in postino("user", "list", "--data", data).stdout
    cp = postino("user", "add", "h2@example.test", "--hash", "{PLAIN}pw", "--data", data,
                 check=False)
    assert cp.returncode == 1, "a clear-text {PLAIN} 'hash' must not be imported"


def test_alias_commands(data):
    postino("user", "add", "a1@example.test", "--data", data, input="pw-Secret-1\n")
    postino("user", "add", "a2@example.test", "--data", data, input="pw-Secret-1\n")
    postino("alias", "add", "both@example.test", "a1@example.test,a2@example.test", "--data", data)
    postino("alias", "add", "@example.test", "a1@example.test", "--data", data)
    out = postino("alias", "list", "--data", data).stdout
    assert "both@example.test" in out and "a2@example.test" in out and "@example.test" in out
    cp = postino("alias", "add", "x@nothosted.test", "a1@example.test", "--data", data, check=False)
    assert cp.returncode == 1
    postino("alias", "remove", "both@example.test", "--data", data)
    postino("alias", "remove", "@example.test", "--data", data)
    out = postino("alias", "list", "--data", data).stdout
    assert "both@example.test" not in out


def test_missing_config_is_error(tmp_path):
    cp = postino("user", "list", "--data", str(tmp_path / "nope"), check=False)
    assert cp.returncode == 1
