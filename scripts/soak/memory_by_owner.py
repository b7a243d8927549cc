#!/usr/bin/env python3
"""The resident memory of a running `leadscore serve`, by who owns each mapping, every
INTERVAL seconds: beside `leadscore bench soak` (RELIABILITY.md, "Soak").

    scripts/soak/memory_by_owner.py [--interval 60] [--match 'leadscore serve']

Columns (MiB, from /proc/PID/smaps): mimalloc = the anonymous regions of 1 GiB or more that
mimalloc reserves (Rust's heap, what it keeps after a free included); glibc_arenas =
anonymous mappings on glibc's 64 MiB arena boundaries (SQLite allocates through malloc);
brk = the [heap] of the main arena; files = file-backed mappings (the program, libraries,
SQLite's shared-memory index); other = stacks and the rest. threads from /proc/PID/status.
"""
import argparse
import re
import subprocess
import sys
import time

GIB = 1 << 30
ARENA = 64 << 20


def server_pid(pattern):
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def owner(start, end, name):
    size = end - start
    if name == "[heap]":
        return "brk"
    if name and not name.startswith("["):
        return "files"
    if name:
        return "other"
    if size >= GIB:
        return "mimalloc"
    if start % ARENA == 0 or (size <= ARENA and end % ARENA == 0):
        return "glibc_arenas"
    return "other"


def sample(pid):
    kib = {"mimalloc": 0, "glibc_arenas": 0, "brk": 0, "files": 0, "other": 0}
    current = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            mapping = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
            if mapping:
                current = owner(int(mapping.group(1), 16), int(mapping.group(2), 16), mapping.group(3).strip())
            elif line.startswith("Rss:") and current:
                kib[current] += int(line.split()[1])
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return kib, int(fields["VmRSS"].split()[0]), int(fields["Threads"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--match", default="leadscore serve", help="pgrep -f pattern of the server's command line")
    args = parser.parse_args()
    start = time.time()
    while True:
        pid = server_pid(args.match)
        if pid:
            try:
                kib, rss, threads = sample(pid)
            except (FileNotFoundError, ProcessLookupError):
                pid = None
            else:
                owners = " ".join(f"{name} {value // 1024}" for name, value in kib.items())
                print(f"{time.time() - start:7.0f}s pid {pid} rss {rss // 1024} MiB threads {threads} {owners}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
