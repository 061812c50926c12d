"""Runs one benchmark contender and measures it: wall time, CPU seconds (user + sys of the process and
of any children it waited for: `wait4`'s rusage, so nothing of other processes such as the emulator),
peak RSS (ru_maxrss: the largest of the process and its waited-for children), and, for context, the CPU
seconds another process (the Kinesis emulator) spent during the run, from /proc/PID/stat.

usage: python3 measure.py [--watch PID] -- COMMAND [ARGS...]
Prints one JSON object on stdout. The command's standard output goes to the file named by --stdout
(discarded by default); its standard error passes through.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def proc_cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--watch", type=int, help="a process whose CPU time during the run is reported")
    ap.add_argument("--stdout", help="file for the command's standard output")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    out = open(a.stdout, "wb") if a.stdout else subprocess.DEVNULL
    watched0 = proc_cpu_seconds(a.watch) if a.watch else None
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, stdout=out, stdin=subprocess.DEVNULL)
    _, status, ru = os.wait4(child.pid, 0)
    wall = time.monotonic() - t0
    watched1 = proc_cpu_seconds(a.watch) if a.watch else None
    result = {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 3),
        "user_s": round(ru.ru_utime, 3),
        "sys_s": round(ru.ru_stime, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    if watched0 is not None and watched1 is not None:
        result["watched_cpu_s"] = round(watched1 - watched0, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
