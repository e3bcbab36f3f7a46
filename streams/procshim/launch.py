"""The launcher: load the seccomp filter, wait for the supervisor, exec the program.

    python -m streams.procshim.launch --sync FD --trap NR,NR,...|all [--keep-nnp] -- PATH ARGV0 ARGS...

Runs as the supervisor's child, single-threaded, importing nothing heavy.
After the filter is loaded every trapped syscall of this process and of all
it forks and execs waits for the supervisor, so the launcher blocks on the
sync pipe until the supervisor has taken the listener fd (pidfd_getfd) and
moved it into its cgroup; then it execs PATH.  A zero byte on the pipe, or
an EOF, means "do not start": exit 126.
"""

from __future__ import annotations

import os
import sys


def build_filter(trap: str, keep_nnp: bool):
    import pyseccomp as sc

    if trap == "all":
        f = sc.SyscallFilter(sc.NOTIFY)
    else:
        f = sc.SyscallFilter(sc.ALLOW)
        for nr in (int(n) for n in trap.split(",") if n):
            f.add_rule(sc.NOTIFY, nr)
    if not keep_nnp:
        # With CAP_SYS_ADMIN the filter needs no no_new_privs, so set-uid
        # programs still work under the shim; without it libseccomp's default
        # (no_new_privs on) is the only way the kernel accepts the filter.
        f.set_attr(sc.Attr.CTL_NNP, 0)
    return f


def main(argv: list[str]) -> int:
    try:
        split = argv.index("--")
    except ValueError:
        print("launch: usage: --sync FD --trap LIST [--keep-nnp] -- PATH ARGV...", file=sys.stderr)
        return 126
    opts, target = argv[:split], argv[split + 1:]
    sync = int(opts[opts.index("--sync") + 1])
    trap = opts[opts.index("--trap") + 1]
    keep_nnp = "--keep-nnp" in opts
    if len(target) < 2:
        print("launch: no program to run", file=sys.stderr)
        return 126
    path, args = target[0], target[1:]
    try:
        flt = build_filter(trap, keep_nnp)
        flt.load()
    except OSError as exc:
        print(f"launch: cannot load the seccomp filter: {exc}", file=sys.stderr)
        return 126
    go = os.read(sync, 1)  # may itself be trapped: the supervisor answers it
    if go != b"\x01":
        return 126
    os.close(sync)
    try:
        os.execv(path, args)
    except OSError as exc:
        print(f"trustctl shim: cannot run `{path}`: {exc.strerror}", file=sys.stderr)
        return 127
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
