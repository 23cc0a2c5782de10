#!/usr/bin/python3
"""pop3bench.py - helpers of bench/pop3/run (see README.md beside this file).

  gen      make the test messages (fixed seed) and manifest.tsv (id, account, size, sha256)
  smtp     deliver them over plain SMTP with parallel sessions (postino's MX port)
  maildir  write the identical files straight into Maildir new/ directories (Dovecot)
  check    compare what pop3load downloaded (its -o rows) with the manifest and the store

Python standard library only; run it with /usr/bin/python3.
"""
import argparse
import base64
import hashlib
import json
import os
import queue
import random
import re
import smtplib
import sqlite3
import sys
import threading
import time

WORDS = ("the of and to in is for that on with as mail server message this be are from at by "
         "it an was or not have will which your you we our can all has more one about new "
         "delivery queue mailbox folder account inbox report meeting budget project review "
         "invoice schedule attached please regards thanks update status notes draft final "
         "weekly monthly quarter summary agenda minutes action items follow customer order "
         "shipping tracking payment receipt contract proposal estimate team office holiday").split()
NAMES = ("Alice Martin", "Bob Dubois", "Carol Schmidt", "Dave Rossi", "Erin Novak", "Frank Lee",
         "Grace Kim", "Heidi Jansen", "Ivan Petrov", "Judy Silva")
# lines that start with a dot: they are dot-stuffed on the wire (SMTP DATA and POP3 RETR)
DOT_LINES = (".", "..", "...", ". indented with a dot", ".signature follows", "..double dot",
             ".\tdot and tab")


def parse_mix(s):
    bins = []
    for part in s.split():
        pct, rng = part.split(":")
        lo, hi = rng.split("-")
        bins.append((float(pct), int(lo), int(hi)))
    tot = sum(b[0] for b in bins)
    return [(p / tot, lo, hi) for p, lo, hi in bins]


def split_counts(n, fracs):
    """n items over the fractions, largest remainder, so the counts add up to n."""
    raw = [n * f for f in fracs]
    cnt = [int(x) for x in raw]
    rest = sorted(range(len(fracs)), key=lambda i: raw[i] - cnt[i], reverse=True)
    for i in rest[: n - sum(cnt)]:
        cnt[i] += 1
    return cnt


def text_lines(rng, nbytes):
    out, have = [], 0
    while have < nbytes:
        if rng.random() < 0.03:
            line = rng.choice(DOT_LINES)
        elif rng.random() < 0.08:
            line = ""
        else:
            width = rng.randint(20, 76)
            words, ln = [], 0
            while ln < width:
                w = rng.choice(WORDS)
                words.append(w)
                ln += len(w) + 1
            line = " ".join(words)
        out.append(line)
        have += len(line) + 2
    return "\r\n".join(out) + "\r\n"


def make_message(mid, account, size, seed):
    rng = random.Random(seed * 1000003 + mid)
    name = rng.choice(NAMES)
    local = name.split()[0].lower()
    ts = 1735689600 + mid * 61
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))
    subj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize()
    hdr = (f"X-Bench-Id: {mid}\r\n"
           f"From: \"{name}\" <{local}@sender.bench.invalid>\r\n"
           f"To: <{account}>\r\n"
           f"Subject: {subj}\r\n"
           f"Date: {date}\r\n"
           f"Message-ID: <bench.{mid}.{seed}@sender.bench.invalid>\r\n"
           f"MIME-Version: 1.0\r\n")
    if size < 16384:
        hdr += "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        body = text_lines(rng, max(size - len(hdr), 10))
        return (hdr + body).encode("ascii")
    b = f"=_bench_{mid}_{seed}"
    hdr += f"Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
    text = text_lines(rng, rng.randint(600, 3000))
    part1 = (f"This is a multi-part message in MIME format.\r\n\r\n--{b}\r\n"
             "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
             + text + "\r\n")
    ext = rng.choice(("pdf", "jpg", "zip", "docx"))
    part2h = (f"--{b}\r\nContent-Type: application/octet-stream; name=\"file{mid}.{ext}\"\r\n"
              f"Content-Disposition: attachment; filename=\"file{mid}.{ext}\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n")
    tail = f"\r\n--{b}--\r\n"
    left = size - len(hdr) - len(part1) - len(part2h) - len(tail)
    raw = rng.randbytes(max(left * 57 // 78, 57))
    att = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (hdr + part1 + part2h).encode("ascii") + att + tail.encode("ascii")


def cmd_gen(a):
    fr = parse_mix(a.mix)
    plan = random.Random(a.seed)
    accounts = [f"u{i}@{a.domain}" for i in range(1, a.users + 1)]
    ids_of = {acc: [i for i in range(a.count) if i % a.users == k] for k, acc in enumerate(accounts)}
    sizes = {}
    for acc in accounts:
        ids = ids_of[acc]
        cnt = split_counts(len(ids), [f[0] for f in fr])
        sz = []
        for (_, lo, hi), c in zip(fr, cnt):
            sz += [plan.randint(lo, hi) for _ in range(c)]
        plan.shuffle(sz)
        for i, s in zip(ids, sz):
            sizes[i] = s
    os.makedirs(os.path.join(a.out, "msgs"), exist_ok=True)
    total = 0
    with open(os.path.join(a.out, "manifest.tsv"), "w") as mf:
        for i in range(a.count):
            acc = accounts[i % a.users]
            data = make_message(i, acc, sizes[i], a.seed)
            with open(os.path.join(a.out, "msgs", f"{i}.eml"), "wb") as f:
                f.write(data)
            total += len(data)
            mf.write(f"{i}\t{acc}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n")
    print(f"generated {a.count} messages, {total} octets ({total / 1e6:.1f} MB), "
          f"{a.users} accounts, seed {a.seed}")


def read_manifest(path):
    m = {}
    with open(path) as f:
        for line in f:
            i, acc, size, h = line.split()
            m[int(i)] = (acc, int(size), h)
    return m


def cmd_maildir(a):
    """Dovecot-style delivery: write each file to tmp/, rename into new/ (S= and W= sizes in the
    name as Dovecot's own LDA/LMTP write them; the files have CRLF line ends so W = S)."""
    m = read_manifest(a.manifest)
    pid = os.getpid()
    for i, (acc, size, _) in m.items():
        local, dom = acc.split("@")
        box = os.path.join(a.root, dom, local)
        for d in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(box, d), exist_ok=True)
        with open(os.path.join(a.msgs, f"{i}.eml"), "rb") as f:
            data = f.read()
        name = f"{1735689600 + i}.M{i % 1000000}P{pid}Q{i}.bench.test,S={size},W={size}"
        tmp = os.path.join(box, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(box, "new", name))
    print(f"wrote {len(m)} messages into Maildirs under {a.root}")


def cmd_smtp(a):
    m = read_manifest(a.manifest)
    q = queue.Queue()
    for i in sorted(m):
        q.put(i)
    lock = threading.Lock()
    st = {"ok": 0, "fail": 0, "bytes": 0, "errors": []}

    def connect():
        s = smtplib.SMTP("127.0.0.1", a.port, local_hostname="sender.bench.invalid", timeout=300)
        s.ehlo()
        return s

    def worker():
        s = None
        while True:
            try:
                i = q.get_nowait()
            except queue.Empty:
                break
            acc, size, _ = m[i]
            with open(os.path.join(a.msgs, f"{i}.eml"), "rb") as f:
                data = f.read()
            err = None
            for attempt in range(3):
                try:
                    if s is None:
                        s = connect()
                    s.sendmail(a.sender, [acc], data)
                    err = None
                    break
                except smtplib.SMTPResponseException as e:
                    err = f"message {i} to {acc}: {e.smtp_code} {e.smtp_error!r}"
                    if e.smtp_code < 500 and attempt < 2:
                        time.sleep(0.5)
                        continue
                    break
                except (smtplib.SMTPException, OSError) as e:
                    err = f"message {i} to {acc}: {type(e).__name__}: {e}"
                    try:
                        if s is not None:
                            s.close()
                    except Exception:
                        pass
                    s = None
                    time.sleep(0.2)
            with lock:
                if err:
                    st["fail"] += 1
                    st["errors"].append(err)
                else:
                    st["ok"] += 1
                    st["bytes"] += size
        if s is not None:
            try:
                s.quit()
            except Exception:
                pass

    t0 = time.monotonic()
    th = [threading.Thread(target=worker) for _ in range(a.clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    secs = time.monotonic() - t0
    for e in st["errors"][:10]:
        print(f"smtp: {e}", file=sys.stderr)
    print(f"RESULT ok={st['ok']} fail={st['fail']} bytes={st['bytes']} secs={secs:.3f} "
          f"rate={st['ok'] / secs if secs else 0:.1f} mbps={st['bytes'] / secs / 1e6 if secs else 0:.2f}")
    return 0 if st["fail"] == 0 else 1


# ---------------------------------------------------------------- check

def store_postino(data_dir, account):
    """uidvalidity and {uid: path} of INBOX from postino's index.db (read-only)."""
    local, dom = account.split("@")
    box = os.path.join(data_dir, "mail", dom, local)
    db = sqlite3.connect(f"file:{os.path.join(box, 'index.db')}?mode=ro", uri=True, timeout=30)
    try:
        mbid, uidv = db.execute("SELECT id, uidvalidity FROM mailboxes WHERE name = 'INBOX'").fetchone()
        rows = db.execute("SELECT uid, filename FROM messages WHERE mailbox_id = ?", (mbid,)).fetchall()
    finally:
        db.close()
    return uidv, {uid: find_file(box, fn) for uid, fn in rows}


def store_dovecot(root, account):
    """uidvalidity and {uid: path} from dovecot-uidlist (version 3 format)."""
    local, dom = account.split("@")
    box = os.path.join(root, dom, local)
    with open(os.path.join(box, "dovecot-uidlist")) as f:
        head = f.readline().split()
        uidv = int(next(x[1:] for x in head[1:] if x.startswith("V")))
        files = {}
        for line in f:
            meta, _, fn = line.rstrip("\n").partition(":")
            files[int(meta.split()[0])] = find_file(box, fn)
    return uidv, files


_dir_cache = {}


def find_file(box, fn):
    """The file of a Maildir message: by base name (before ':2,...') in cur/ or new/."""
    fn = os.path.basename(fn)
    base = fn.split(":")[0]
    if box not in _dir_cache:
        idx = {}
        for d in ("cur", "new"):
            try:
                for e in os.listdir(os.path.join(box, d)):
                    idx[e.split(":")[0]] = os.path.join(box, d, e)
            except FileNotFoundError:
                pass
        _dir_cache[box] = idx
    return _dir_cache[box].get(base)


def cmd_check(a):
    man = read_manifest(a.manifest)
    per_acc = {}
    for i, (acc, size, _) in man.items():
        per_acc.setdefault(acc, []).append(i)
    errors = []
    info = []

    def err(s):
        errors.append(s)

    sessions, seen = {}, {}
    uidls = {}
    cases = set()
    n_hashed = n_list_eq_wire = n_list_eq_size = 0
    prefixes = []
    tot_wire = tot_size = 0
    msgs_by_acc = {}
    with open(a.rows) as f:
        for line in f:
            p = line.split()
            if p[0] == "S":
                sessions[p[1]] = [int(x) for x in p[2:]]
            elif p[0] == "M":
                acc, no, uidl = p[1], int(p[2]), p[3]
                lsize, wire, size, prefix, mid, h = int(p[4]), int(p[5]), int(p[6]), int(p[7]), int(p[8]), p[9]
                msgs_by_acc.setdefault(acc, []).append((no, uidl, lsize, wire, size, prefix, mid, h))
    for acc in sorted(per_acc):
        want = len(per_acc[acc])
        s = sessions.get(acc)
        if s is None:
            err(f"{acc}: no session")
            continue
        stat_n, stat_oct, uidl_n, list_n, list_sum, retr_ok = s
        if stat_n != want:
            err(f"{acc}: STAT says {stat_n} messages, {want} were stored")
        if uidl_n != stat_n or list_n != stat_n:
            err(f"{acc}: STAT {stat_n} messages, UIDL lists {uidl_n}, LIST lists {list_n}")
        if stat_oct != list_sum:
            err(f"{acc}: STAT octets {stat_oct} != sum of LIST sizes {list_sum}")
        if retr_ok != stat_n:
            err(f"{acc}: {retr_ok} of {stat_n} RETRs succeeded")
        store = None
        if a.store:
            kind, path = a.store.split(":", 1)
            try:
                store = (store_postino if kind == "postino" else store_dovecot)(path, acc)
            except Exception as e:   # report, do not crash
                err(f"{acc}: cannot read the {kind} store: {type(e).__name__}: {e}")
        seen_uidl = set()
        for no, uidl, lsize, wire, size, prefix, mid, h in msgs_by_acc.get(acc, []):
            tag = f"{acc} msg {no} (X-Bench-Id {mid})"
            if mid not in man or mid < 0:
                err(f"{acc} msg {no}: no X-Bench-Id header found (or unknown id {mid})")
                continue
            macc, msize, mhash = man[mid]
            if macc != acc:
                err(f"{tag}: belongs to {macc}")
            if mid in seen:
                err(f"{tag}: downloaded twice (also {seen[mid]})")
            seen[mid] = f"{acc} msg {no}"
            if size - prefix != msize:
                err(f"{tag}: {size - prefix} octets after the trace headers, {msize} were sent")
            if h != "-":
                n_hashed += 1
                if h != mhash:
                    err(f"{tag}: content differs from what was sent (sha256)")
            if a.prefix == "none" and prefix != 0:
                err(f"{tag}: {prefix} unexpected octets before the message")
            if a.prefix == "trace" and prefix == 0:
                err(f"{tag}: no trace header lines before the message")
            prefixes.append(prefix)
            tot_wire += wire
            tot_size += size
            if lsize == wire:
                n_list_eq_wire += 1
            if lsize == size:
                n_list_eq_size += 1
            elif a.exact_list:
                err(f"{tag}: LIST says {lsize} octets, the message has {size} (un-stuffed, CRLF line ends)")
            if uidl in seen_uidl:
                err(f"{tag}: UIDL {uidl} not unique")
            seen_uidl.add(uidl)
            uidls[str(mid)] = uidl
            if re.fullmatch(r"[0-9A-F]{16}", uidl):
                cases.add("upper")
            elif re.fullmatch(r"[0-9a-f]{16}", uidl):
                cases.add("lower")
                if a.uidl_upper:
                    err(f"{tag}: UIDL {uidl!r} is not %08X%08X (upper-case hex)")
            else:
                err(f"{tag}: UIDL {uidl!r} is not 16 hex digits (UID, UIDVALIDITY)")
                continue
            if store:
                uidv, files = store
                uid, uv = int(uidl[:8], 16), int(uidl[8:], 16)
                if uv != uidv:
                    err(f"{tag}: UIDL {uidl} has UIDVALIDITY {uv}, the store says {uidv}")
                path = files.get(uid)
                if path is None:
                    err(f"{tag}: UIDL {uidl}: no message with UID {uid} in the store's index")
                else:
                    try:
                        fsize = os.path.getsize(path)
                    except OSError as e:
                        err(f"{tag}: {path}: {e}")
                        continue
                    if fsize != size:
                        err(f"{tag}: RETR gave {size} octets (after un-stuffing), the file {path} has {fsize}")
                    if a.sample_prefix and prefix and not info:
                        with open(path, "rb") as pf:
                            info.append(pf.read(prefix).decode("ascii", "replace"))
    missing = [i for i in man if i not in seen]
    if missing:
        err(f"{len(missing)} stored messages were not downloaded (e.g. X-Bench-Id {missing[:5]})")
    if a.uidl_ref:
        if os.path.exists(a.uidl_ref):
            with open(a.uidl_ref) as f:
                ref = json.load(f)
            changed = [k for k, v in uidls.items() if ref.get(k) not in (None, v)]
            if changed:
                err(f"{len(changed)} UIDLs changed since the first download (e.g. X-Bench-Id {changed[0]}: "
                    f"{ref[changed[0]]} -> {uidls[changed[0]]})")
        else:
            with open(a.uidl_ref, "w") as f:
                json.dump(uidls, f)
    for e in errors[:12]:
        print(f"check[{a.server}]: {e}", file=sys.stderr)
    if len(errors) > 12:
        print(f"check[{a.server}]: ... {len(errors) - 12} more", file=sys.stderr)
    n = len(seen)
    print(f"CHECK server={a.server} msgs={n} of={len(man)} wire_octets={tot_wire} size_octets={tot_size} "
          f"hashed={n_hashed} list_eq_wire={n_list_eq_wire} list_eq_size={n_list_eq_size} "
          f"prefix_min={min(prefixes) if prefixes else 0} prefix_max={max(prefixes) if prefixes else 0} "
          f"uidl_hex={'+'.join(sorted(cases)) or '-'} errors={len(errors)}")
    if info:
        sys.stdout.write("PREFIX " + info[0].replace("\r\n", "\\r\\n") + "\n")
    return 1 if errors else 0


SIZE_BINS = ((16384, "<16K"), (65536, "16-64K"), (262144, "64-256K"), (None, ">=256K"))


def cmd_sizes(a):
    """RETR latency by message size, from pop3load rows: 'bin n p50 p99' per bin."""
    lat = {name: [] for _, name in SIZE_BINS}
    for path in a.rows:
        with open(path) as f:
            for line in f:
                p = line.split()
                if p[0] != "M" or len(p) < 11:
                    continue
                size = int(p[6])
                name = next(n for lim, n in SIZE_BINS if lim is None or size < lim)
                lat[name].append(float(p[10]))
    out = []
    for _, name in SIZE_BINS:
        v = sorted(lat[name])
        if not v:
            continue
        pick = lambda q: v[min(len(v), max(1, int(q / 100 * len(v) + 0.999999))) - 1]
        out.append(f"{name} n={len(v)} p50={pick(50):.1f} p99={pick(99):.1f}")
    print("  ".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--count", type=int, default=10000)
    g.add_argument("--users", type=int, default=10)
    g.add_argument("--domain", default="bench.test")
    g.add_argument("--seed", type=int, default=1110995)
    g.add_argument("--mix", default="70:2048-10240 25:20480-204800 5:524288-2097152")
    s = sub.add_parser("smtp")
    s.add_argument("--manifest", required=True)
    s.add_argument("--msgs", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--clients", type=int, default=20)
    s.add_argument("--sender", default="sender@sender.bench.invalid")
    md = sub.add_parser("maildir")
    md.add_argument("--manifest", required=True)
    md.add_argument("--msgs", required=True)
    md.add_argument("--root", required=True)
    c = sub.add_parser("check")
    c.add_argument("--manifest", required=True)
    c.add_argument("--rows", required=True)
    c.add_argument("--server", required=True)
    c.add_argument("--prefix", choices=("none", "trace", "any"), default="any")
    c.add_argument("--exact-list", action="store_true", help="LIST size must equal the message's own size (RETR un-stuffed)")
    c.add_argument("--store", help="postino:DATA_DIR or dovecot:MAIL_ROOT, to check UIDLs and file sizes")
    c.add_argument("--uidl-ref", help="JSON file: written on the first check, compared on later ones")
    c.add_argument("--uidl-upper", action="store_true", help="UIDL must be upper-case hex (%%08X%%08X)")
    c.add_argument("--sample-prefix", action="store_true", help="print one stored message's prefix")
    z = sub.add_parser("sizes")
    z.add_argument("rows", nargs="+")
    a = ap.parse_args()
    return {"gen": cmd_gen, "smtp": cmd_smtp, "maildir": cmd_maildir, "check": cmd_check,
            "sizes": cmd_sizes}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
