"""Dovecot's IMAP conformance tool, imaptest, runs its scripted test groups against postino.

Skipped unless the environment variable IMAPTEST names a built imaptest binary; its scripted
groups are read from the `tests` directory beside the binary (src/tests in imaptest's source
tree) or one level up. How to build imaptest: README.md, "IMAP conformance (imaptest)".

Every group file is one pytest test, so the summary names the groups that fail. A group passes
when imaptest reports no failed command, no group skipped for a missing capability (such a
group runs no command at all), and no protocol error (such as a keyword used before an untagged
FLAGS announced it).
"""
import os
import re
import subprocess

import pytest

from test_imap_helpers import _no_crash, imaplib_login, new_user, srv  # noqa: F401

IMAPTEST = os.environ.get("IMAPTEST", "")
# one scripted group needs a few seconds at most; a hang must not stall the whole suite
GROUP_TIMEOUT = 120


def _tests_dir():
    """The scripted-test directory that belongs to the imaptest binary named by IMAPTEST."""
    base = os.path.dirname(os.path.abspath(IMAPTEST))
    for d in (os.path.join(base, "tests"), os.path.join(base, "..", "tests"),
              os.path.join(base, "src", "tests")):
        if os.path.isfile(os.path.join(d, "default.mbox")):
            return os.path.normpath(d)
    return None


def _groups():
    """The scripted groups (every file but the *.mbox message sources), sorted by name."""
    if not IMAPTEST:
        return []
    d = _tests_dir()
    if d is None:
        return []
    return sorted(f for f in os.listdir(d)
                  if not f.startswith(".") and not f.endswith(".mbox")
                  and os.path.isfile(os.path.join(d, f)))


GROUPS = _groups()
SUMMARY = re.compile(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", re.M)
COMMANDS = re.compile(r"^(base protocol|extensions): (\d+)/(\d+) individual commands failed", re.M)
PROBLEM = re.compile(r"^(Error|Panic|Fatal): .*$", re.M)


def test_imaptest_configured():
    """Without IMAPTEST the whole module is skipped; with it, its tests directory must exist."""
    if not IMAPTEST:
        pytest.skip("IMAPTEST is not set (path of a built imaptest binary)")
    assert os.access(IMAPTEST, os.X_OK), "IMAPTEST=%s is not an executable" % IMAPTEST
    assert _tests_dir(), "no imaptest tests directory (with default.mbox) beside %s" % IMAPTEST
    assert len(GROUPS) > 10, "only %d scripted groups found in %s" % (len(GROUPS), _tests_dir())


@pytest.mark.parametrize("group", GROUPS or ["(none)"])
def test_imaptest_group(srv, group):  # noqa: F811
    if not GROUPS:
        pytest.skip("IMAPTEST is not set (path of a built imaptest binary)")
    user = new_user(srv, "imaptest")
    args = [IMAPTEST, "host=127.0.0.1", "port=%d" % srv.port("imaps"), "ssl=any-cert",
            "user=" + user, "pass=" + srv.password, "test=" + os.path.join(_tests_dir(), group)]
    with open(os.path.join(_tests_dir(), group), encoding="utf-8", errors="replace") as f:
        two_users = "$user2" in f.read()
    if two_users:
        # "user 2: $user2" (urlauth2: another account fetches the first one's URLAUTH URLs).
        # Such a group asks for no messages of its own, yet fetches two: imaptest deletes and
        # creates its mailbox first, so its messages must be in one it cannot delete, the
        # INBOX, where the second user (who selects the same name) has a mailbox as well
        user2 = new_user(srv, "imaptest2-")
        m = imaplib_login(srv, user, "imaps")
        for i in (1, 2):
            m.append("INBOX", None, None,
                     ("From: user%d@example.test\r\nSubject: s%d\r\n\r\nbody%d\r\n"
                      % (i, i, i)).encode())
        m.logout()
        args += ["user2=" + user2, "box=INBOX"]
    cp = subprocess.run(
        args,
        capture_output=True, text=True, timeout=GROUP_TIMEOUT)
    out = cp.stdout + cp.stderr
    m = SUMMARY.search(out)
    assert m, "imaptest printed no summary (exit %d):\n%s" % (cp.returncode, out[-6000:])
    groups, failed, skipped = (int(x) for x in m.groups())
    assert groups == 1, "imaptest ran %d groups for %s:\n%s" % (groups, group, out[-6000:])
    commands = {k: (int(a), int(b)) for k, a, b in COMMANDS.findall(out)}
    bad_commands = sum(a for a, _ in commands.values())
    problems = PROBLEM.findall(out)
    assert skipped == 0, "group %s skipped: postino lacks a capability it needs\n%s" % (
        group, out[-6000:])
    # this imaptest build counts a group whose `capabilities:` line names something postino
    # does not announce as neither failed nor skipped: it just runs no command at all
    ran = sum(b for _, b in commands.values())
    assert ran > 0, ("group %s ran no command: postino does not announce a capability it needs "
                     "(its `capabilities:` line)\n%s" % (group, out[-6000:]))
    assert failed == 0 and bad_commands == 0 and not problems, (
        "imaptest group %s: %d commands failed, %d errors\n%s"
        % (group, bad_commands, len(PROBLEM.findall(out)), out[-12000:]))


STRESS_SECS = int(os.environ.get("IMAPTEST_STRESS_SECS", "30"))


@pytest.mark.parametrize("mode,extra", [("default", []),
                                        ("logout0", ["logout=0", "clients=20"])])
def test_imaptest_stress(srv, mode, extra):  # noqa: F811
    """imaptest's default stress workload (clients logging in, selecting, fetching, storing,
    expunging and appending in one mailbox at once) for IMAPTEST_STRESS_SECS seconds (30; the
    issue's run is 300): no error line at all, such as 'MODSEQ dropped' or 'Keyword used
    without being in FLAGS'. logout0: 20 clients that stay logged in, which found an EXPUNGE
    of a message the session had not announced yet ('Tried to expunge sequence 26 with only
    22 msgs')."""
    if not IMAPTEST:
        pytest.skip("IMAPTEST is not set (path of a built imaptest binary)")
    user = new_user(srv, "stress")
    cp = subprocess.run(
        [IMAPTEST, "host=127.0.0.1", "port=%d" % srv.port("imaps"), "ssl=any-cert",
         "user=" + user, "pass=" + srv.password,
         "mbox=" + os.path.join(_tests_dir(), "default.mbox"), "secs=%d" % STRESS_SECS] + extra,
        capture_output=True, text=True, timeout=STRESS_SECS + 120)
    out = cp.stdout + cp.stderr
    assert "Totals:" in out, "imaptest stress printed no totals (exit %d):\n%s" % (
        cp.returncode, out[-6000:])
    problems = PROBLEM.findall(out)
    assert not problems, "imaptest stress: %d error lines, first ones:\n%s" % (
        len(problems), "\n".join(re.findall(r"^(?:Error|Panic|Fatal): .*$", out, re.M)[:20]))
    # the workload did run: logins and fetches were counted
    totals = out[out.index("Totals:"):].splitlines()
    assert len(totals) >= 5 and int(totals[-1].split()[0]) > 0, out[-3000:]
