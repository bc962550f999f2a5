#!/usr/bin/env python3
"""The image-host workload of loadtest/bench/run.sh (stdlib only).

  imagehost.py gen --out DIR [--images 10000] [--samples 200000] [--zipf 1.0] [--miss 0.10] [--seed 1]
      writes DIR/catalog.txt (one image size in bytes per line, image i on line i) and
      DIR/table.txt (line 1: the sizes, comma-separated; line 2: the request sequence, image
      ids drawn from a Zipf distribution, 0 = a never-seen upload, which must miss), and
      prints the workload's figures as JSON.
  imagehost.py warm --base URL --dir DIR [--threads 8]
      GETs every image once (the cache fills); prints counts of X-Cache-Status as JSON.
  imagehost.py sample --base URL --dir DIR [--n 2000] [--nonce X]
      replays N requests of the sequence (as the wrk script does) and prints the
      X-Cache-Status counts and the hit rate as JSON.

Image i is GET /img/<i>.jpg?size=<bytes>&ctype=image/jpeg on weir-origin, which answers
exactly that many bytes; a never-seen upload is /img/new-<nonce>-<n>.jpg?size=...
Sizes: 70 % thumbnails and previews (log-normal, median 24 KiB), 30 % full-size images
(log-normal, median 200 KiB), clamped to 10 KiB - 2 MiB; popularity is independent of size.
"""

import argparse
import bisect
import http.client
import json
import math
import os
import random
import sys
import threading
import urllib.parse

KIB = 1024
MIN_SIZE, MAX_SIZE = 10 * KIB, 2 * 1024 * KIB


def image_path(i, size):
    return f"/img/{i}.jpg?size={size}&ctype=image/jpeg"


def miss_path(nonce, n, size):
    return f"/img/new-{nonce}-{n}.jpg?size={size}&ctype=image/jpeg"


def gen(args):
    rng = random.Random(args.seed)
    sizes = []
    for _ in range(args.images):
        if rng.random() < 0.7:
            s = rng.lognormvariate(math.log(24 * KIB), 0.5)
        else:
            s = rng.lognormvariate(math.log(200 * KIB), 0.7)
        sizes.append(int(min(MAX_SIZE, max(MIN_SIZE, s))))
    # Zipf over the images: weight of the k-th most popular is 1 / k^s; which image is the
    # k-th most popular is a random permutation (so size and popularity are independent).
    order = list(range(1, args.images + 1))
    rng.shuffle(order)
    cum, total = [], 0.0
    for k in range(1, args.images + 1):
        total += 1.0 / (k ** args.zipf)
        cum.append(total)
    seq = []
    for _ in range(args.samples):
        if rng.random() < args.miss:
            seq.append(0)
        else:
            k = bisect.bisect_left(cum, rng.random() * total)
            seq.append(order[min(k, args.images - 1)])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "catalog.txt"), "w") as f:
        f.write("\n".join(map(str, sizes)) + "\n")
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(",".join(map(str, sizes)) + "\n")
        f.write(",".join(map(str, seq)) + "\n")
    hits = [sizes[i - 1] for i in seq if i]
    distinct = len(set(i for i in seq if i))
    figures = {
        "images": args.images,
        "zipf_s": args.zipf,
        "miss_fraction": args.miss,
        "samples": args.samples,
        "distinct_images_in_sequence": distinct,
        "catalog_bytes": sum(sizes),
        "mean_image_bytes": round(sum(sizes) / len(sizes)),
        "median_image_bytes": sorted(sizes)[len(sizes) // 2],
        "mean_bytes_per_hit_request": round(sum(hits) / max(1, len(hits))),
        "expected_hit_rate": round(len(hits) / len(seq), 4),
    }
    json.dump(figures, sys.stdout)
    print()


def load(dirname):
    with open(os.path.join(dirname, "table.txt")) as f:
        sizes = [int(x) for x in f.readline().split(",")]
        seq = [int(x) for x in f.readline().split(",")]
    return sizes, seq


def fetch(conn, path):
    """GET path on a keep-alive connection; returns (status, X-Cache-Status, body bytes)."""
    conn.request("GET", path, headers={"Host": "img.test"})
    r = conn.getresponse()
    n = 0
    while True:
        chunk = r.read(256 * KIB)
        if not chunk:
            break
        n += len(chunk)
    return r.status, r.getheader("X-Cache-Status", "-"), n


def connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def warm(args):
    sizes, _ = load(args.dir)
    todo = list(range(1, len(sizes) + 1))
    lock = threading.Lock()
    counts, bad = {}, []

    def worker():
        conn = connect(args.base)
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            try:
                status, cache, n = fetch(conn, image_path(i, sizes[i - 1]))
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = connect(args.base)
                with lock:
                    bad.append(f"{i}: {e}")
                continue
            with lock:
                counts[cache] = counts.get(cache, 0) + 1
                if status != 200 or n != sizes[i - 1]:
                    bad.append(f"{i}: status {status}, {n} bytes, want {sizes[i - 1]}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"cache_status": counts, "errors": len(bad), "first_errors": bad[:5]}, sys.stdout)
    print()
    if len(bad) > len(sizes) // 100:
        sys.exit(f"imagehost warm: {len(bad)} bad responses, e.g. {bad[:3]}")


def sample(args):
    sizes, seq = load(args.dir)
    conn = connect(args.base)
    counts, misses, bad = {}, 0, 0
    start = random.Random(args.nonce).randrange(len(seq))
    for k in range(args.n):
        i = seq[(start + k) % len(seq)]
        if i:
            path, want = image_path(i, sizes[i - 1]), sizes[i - 1]
        else:
            misses += 1
            want = sizes[(misses * 7919) % len(sizes)]
            path = miss_path(f"s{args.nonce}", misses, want)
        status, cache, n = fetch(conn, path)
        counts[cache] = counts.get(cache, 0) + 1
        bad += status != 200 or n != want
    conn.close()
    hit = counts.get("HIT", 0)
    json.dump({"n": args.n, "cache_status": counts, "hit_rate": round(hit / args.n, 4), "errors": bad}, sys.stdout)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--images", type=int, default=10000)
    g.add_argument("--samples", type=int, default=200000)
    g.add_argument("--zipf", type=float, default=1.0)
    g.add_argument("--miss", type=float, default=0.10)
    g.add_argument("--seed", type=int, default=1)
    g.set_defaults(func=gen)
    w = sub.add_parser("warm")
    w.add_argument("--base", required=True)
    w.add_argument("--dir", required=True)
    w.add_argument("--threads", type=int, default=8)
    w.set_defaults(func=warm)
    s = sub.add_parser("sample")
    s.add_argument("--base", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--nonce", default="0")
    s.set_defaults(func=sample)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
