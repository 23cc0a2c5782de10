#!/usr/bin/python3
"""A fast SMTP sink for bench/outbound: accepts everything on HOST:PORT for every HOST given,
answers PIPELINING, counts messages and writes to COUNTFILE every 0.1 s one line

  TOTAL UNIQUE FIRST LAST

TOTAL = messages accepted, UNIQUE = distinct bench Message-IDs (<bench-N@...>) among them,
FIRST / LAST = wall-clock time (seconds since the epoch) of the first and the latest accepted
message, 0 before the first. Times are taken when the final dot arrives, before the 250 reply.

usage: sink.py COUNTFILE PORT HOST [HOST ...]
"""
import asyncio
import os
import sys
import time

count = 0
seen = set()
first = 0.0
last = 0.0
MARK = b"<bench-"


def record(data):
    """Account one message (its bytes up to and including CRLF.CRLF)."""
    global count, first, last
    last = time.time()
    if not count:
        first = last
    count += 1
    i = data.find(MARK)
    if i >= 0:
        j = data.find(b"@", i, i + 40)
        if j > 0 and data[i + len(MARK):j].isdigit():
            seen.add(int(data[i + len(MARK):j]))


async def session(reader, writer):
    writer.write(b"220 sink.bench ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                             b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"HELO":
                writer.write(b"250 sink.bench\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                record(await reader.readuntil(b"\r\n.\r\n"))
                writer.write(b"250 2.0.0 ok %d\r\n" % count)
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:   # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 2.0.0 ok\r\n")
            if not reader._buffer:   # flush once per pipelined batch
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def report(path):
    while True:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d %.6f %.6f\n" % (count, len(seen), first, last))
        os.rename(tmp, path)
        await asyncio.sleep(0.1)


async def main():
    path, port, hosts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    for h in hosts:
        await asyncio.start_server(session, h, port, limit=1 << 20, backlog=256)
    await report(path)


asyncio.run(main())
