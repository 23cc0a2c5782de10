"""Brute-force brake on every login path (SMTP AUTH, IMAP, POP3): failed logins are answered
after a delay that grows with each failure of the IP or the account; a correct login is never
delayed, so the owner can still log in while someone guesses (issue 5's requirement, shared by
all protocols)."""
import imaplib
import poplib
import smtplib
import time

from postino_server import Server

USER = "victim@example.test"


def test_failures_slow_down_but_correct_login_is_not_delayed():
    srv = Server(extra_conf="login_delay_max = 4s", users=(USER,))
    try:
        times = []
        for i in range(5):
            t0 = time.time()
            m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(),
                                  timeout=30)
            try:
                m.login(USER, "guess-%d" % i)
                raise AssertionError("a wrong password was accepted")
            except imaplib.IMAP4.error as e:
                assert "AUTHENTICATIONFAILED" in str(e)
            times.append(time.time() - t0)
            m.logout()
        # the first failure is answered at once, later ones ever more slowly, capped
        assert times[0] < 1.0
        assert times[2] > 0.4 and times[4] > 1.5, times
        assert max(times) < 8, times
        # POP3 and SMTP from the same IP are braked too
        t0 = time.time()
        p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=30)
        p.user(USER)
        try:
            p.pass_("nope")
        except poplib.error_proto as e:
            assert e.args[0].startswith(b"-ERR [AUTH]")
        assert time.time() - t0 > 1.5
        t0 = time.time()
        s = smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.ctx(),
                             timeout=30)
        try:
            s.login(USER, "nope")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535
        assert time.time() - t0 > 1.5
        # the right password gets in without waiting
        t0 = time.time()
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=30)
        m.login(USER, srv.password)
        assert time.time() - t0 < 1.5
        m.logout()
    finally:
        srv.stop()
