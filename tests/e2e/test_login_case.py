"""The login name is the full address, matched without regard to case (issue 6): a user who
types "Alice@Example.TEST" logs in over IMAP, POP3 and SMTP submission alike."""
import imaplib
import poplib
import smtplib

from test_imap_helpers import _no_crash, srv, user  # noqa: F401


def test_login_name_is_case_insensitive(srv, user):
    local, domain = user.split("@")
    mixed = local.upper() + "@" + domain.title()
    assert mixed != user
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=10)
    assert m.login(mixed, srv.password)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ctx(), timeout=10)
    p.user(mixed)
    assert p.pass_(srv.password).startswith(b"+OK")
    p.quit()
    s = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10)
    s.starttls(context=srv.ctx())
    s.login(mixed, srv.password)
    # the envelope sender may use the mixed-case form of the same address
    s.sendmail(mixed, [user], "From: %s\r\nTo: %s\r\nSubject: case\r\n\r\nhi\r\n" % (mixed, user))
    s.quit()
    # a wrong password is still refused, whatever the case
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ctx(), timeout=10)
    try:
        m.login(mixed, srv.password + "x")
        raise AssertionError("wrong password accepted")
    except imaplib.IMAP4.error:
        pass
    m.logout()
