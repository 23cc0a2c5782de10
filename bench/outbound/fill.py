#!/usr/bin/python3
"""Fill the load for bench/outbound.

  fill.py postino QUEUE_DIR N DOMAINS SIZE   write N queue entries as postino's SMTP server does
                                             (body + envelope with CRC-32, .env last)
  fill.py smtp PORT N DOMAINS SIZE [CONNS]    send N messages over SMTP to 127.0.0.1:PORT
Recipients rotate over u@d1.bench .. u@dDOMAINS.bench; the sender is sender@bench.test.
"""
import os
import smtplib
import sys
import threading
import time
import zlib


def body(i, size):
    head = ("From: <sender@bench.test>\r\nTo: <u@d%d.bench>\r\nSubject: bench %d\r\n"
            "Message-ID: <bench-%d@bench.test>\r\n\r\n" % (i, i, i)).encode()
    line = b"x" * 76 + b"\r\n"
    pad = line * max(0, (size - len(head)) // len(line))
    return head + pad


def fill_postino(qdir, n, domains, size):
    now = int(time.time())
    for i in range(n):
        qid = "b%015x" % i
        data = b"Return-Path: <sender@bench.test>\r\n" + body(i, size)
        with open(os.path.join(qdir, qid + ".msg"), "wb") as f:
            f.write(data)
        env = ("version 1\nid %s\narrived %d\nfrom <sender@bench.test>\nbody 7BIT\nsmtputf8 0\n"
               "ret -\nenvid -\nauth -\nsize %d\ncrc32 %08x\nrcpt <u@d%d.bench> notify=- orcpt=-\n"
               % (qid, now, len(data), zlib.crc32(data), i % domains + 1))
        with open(os.path.join(qdir, qid + ".env.tmp"), "w") as f:
            f.write(env)
        os.rename(os.path.join(qdir, qid + ".env.tmp"), os.path.join(qdir, qid + ".env"))
    os.sync()


def fill_smtp(port, n, domains, size, conns):
    """Send over CONNS sessions; a session the server drops is opened again and the message that
    was in flight sent again (the caller checks the count queued). Exit status 1 when a
    message could not be sent after 5 tries."""
    failed = []
    retries = [0]

    def worker(k):
        s = None
        try:
            for i in range(k, n, conns):
                for attempt in range(5):
                    try:
                        if s is None:
                            s = smtplib.SMTP("127.0.0.1", port, timeout=120)
                        s.sendmail("sender@bench.test", ["u@d%d.bench" % (i % domains + 1)],
                                   body(i, size))
                        break
                    except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as e:
                        retries[0] += 1
                        print("fill.py: message %d, try %d: %s" % (i, attempt + 1, e),
                              file=sys.stderr)
                        s = None
                        time.sleep(0.5)
                else:
                    failed.append(i)
                    return
        except Exception as e:   # an SMTP error reply: report it, fail the fill
            print("fill.py: message %d: %r" % (i, e), file=sys.stderr)
            failed.append(i)
        finally:
            if s is not None:
                try:
                    s.quit()
                except Exception:
                    pass
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if retries[0]:
        print("fill.py: %d sessions were dropped by the server and reopened" % retries[0],
              file=sys.stderr)
    if failed:
        print("fill.py: %d sessions gave up (first message %d)" % (len(failed), min(failed)),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "postino":
        fill_postino(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        fill_smtp(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                  int(sys.argv[6]) if len(sys.argv) > 6 else 8)
