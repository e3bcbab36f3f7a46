"""Evaluations per second: the compiled engine against cedarpy, on the same decisions.

    python -m benchmarks.eval_bench            # full run, about 3 minutes (cedarpy is the slow part)
    python -m benchmarks.eval_bench --quick    # short run, about 40 s
    python -m benchmarks.eval_bench --events 200000 --reps 7

Writes ``benchmarks/results/eval_bench.json``; exits 1 if the two engines
decide any request differently.

What is measured.  A seeded synthetic workload: a policy document (about 50
syscall policies with allow and deny globs, minimum trust, argument
constraints, a custom validator; 8 identity rules with trust adjustments),
200 identities, and events about 60% compliant, 40% violating (every reason
code but ``quarantined``).  Over the same events, with inputs built before
timing:

* the engine: ``evaluate(cp, ctx, T, None, now)`` per pre-built context, the
  single-event API the stream uses;
* cedarpy ``is_authorized_batch`` in chunks, policy set and entities parsed
  once into handles, two ways: one policy set with every permit (the plain
  translation), and one set per action with requests grouped by action
  beforehand (Cedar evaluates every policy of a set for each request, so
  this is Cedar indexed by hand, as the engine indexes by syscall).  Batch
  size and request form (uids as dicts or strings, context as dict or JSON
  text) are swept first; the fastest is used.  A floor is timed too: one
  unconditional permit and an empty context, cedarpy's per-request cost with
  no policy work at all.

Each runner is warmed up once, then all are timed in turns for several
rounds, so background load on a shared machine falls on all alike; figures
are medians.  The engine's per-(identity, syscall) plans and memos are warm
after the warm-up, its designed steady state; the cold first pass over a
freshly loaded policy is reported beside it.

Trust is held fixed per identity: one adaptive T per identity (or none:
unseen, so the baseline), passed to ``evaluate`` as ``adaptive`` and to Cedar
as the entity attribute ``trust``; nothing updates it between events (that
is TrustEngine's job, not the pure evaluator's), so both engines see the same
inputs on every repetition.  No process is in the redzone.  This favours the
engine's trust memos (about 180 distinct T, all seen in the warm-up); in a
stream T moves with each decision, and a value new to the process costs one
memo miss (a few microseconds) the first time.

The translation to Cedar.  One ``permit`` per policy, ``action ==
Action::"<syscall>"``, its ``when`` holding the checks in SPEC order; no
permit means deny, like ``default_action: deny``.  Cedar computes everything
at request time:

* identity globs -> ``principal.name like "svc-*"`` (the workload uses only
  ``*``: ``like`` has no ``?`` or ``[...]``);
* trust -> integer micro-units: ``min(context.score, principal.trust)`` plus
  ``if principal.name like ... then <adj> else 0`` per identity rule that
  applies to the action (``syscall_patterns`` are matched against the
  permit's action when translating), compared with the minimum.  Scores, T
  and adjustments have at most 6 decimals, so this is exactly the spec's
  ``round(clamp(...), 6)`` comparison (a minimum of 0 emits no condition and
  every minimum is <= 1, so clamping cannot change the outcome);
* argument regexes -> Cedar has none, so the workload uses only regexes with
  an exact ``like``/``==`` form: literal alternatives, each maybe ending in
  ``.*`` (``/tmp/.*|/var/.*`` -> ``a like "/tmp/*" || a like "/var/*"``;
  ``.`` skips newlines, ``*`` does not, and no argument has one).  Anything
  else is refused;
* ``no_path_traversal`` -> no argument is ``..``, ``../*``, ``*/..`` or
  ``*/../*`` (exactly "has a ``..`` segment").

All policies are in ``enforce`` mode with no ``warn``/``allow`` action, so the
engine's ``allowed`` is exactly "compliant", which is what Cedar decides.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any, Callable, NamedTuple

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cedarpy  # noqa: E402

from streams.events import context_from_record  # noqa: E402
from streams.policy import load_policy  # noqa: E402
from streams.policy.evaluate import evaluate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "eval_bench.json"
NOW = "2026-11-28T12:00:00.000000Z"
MAX_ARGS = 3
MICRO = 1_000_000

# ---------------------------------------------------------------- workload

# syscall -> the kind of arguments it takes
KINDS = {
    "file": ["open", "openat", "open_file", "creat", "read", "write", "pread64", "pwrite64",
             "unlink", "unlinkat", "rename", "renameat", "mkdir", "rmdir", "chmod", "chown",
             "truncate", "stat", "lstat", "readlink", "access", "getdents64"],
    "net": ["socket", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg",
            "recvfrom", "recvmsg", "setsockopt", "getsockopt"],
    "exec": ["execve", "execveat", "fork", "clone", "clone3", "kill", "ptrace", "prctl"],
    "mem": ["mmap", "munmap", "mprotect", "brk", "madvise", "mremap"],
    "misc": ["ioctl", "fcntl", "getpid", "getuid", "setuid", "mount", "umount2", "reboot",
             "sethostname", "init_module", "bpf", "perf_event_open", "keyctl", "unshare"],
}
ARG_RULES = {  # argument constraints a policy of that kind may carry (Cedar-expressible)
    "file": [{0: "/tmp/.*|/var/.*|/srv/data/.*"}, {0: "/tmp/.*|/srv/data/.*", 1: "r|rb|w"}],
    "net": [{1: "443|8443|53"}, {0: "10\\.0\\..*", 1: "443|8443"}],
    "exec": [{0: "/usr/bin/.*|/bin/.*"}],
    "mem": [], "misc": [],
}
FAMILIES = [("svc-payments", 30), ("svc-web", 40), ("svc-db", 20), ("svc-untrusted", 10),
            ("batch-etl", 25), ("admin", 9), ("tool-curl", 20), ("tool-ls", 20),
            ("svc-web-canary", 25)]
ALLOW_LISTS = [["svc-*", "admin-*"], ["svc-*", "tool-*", "batch-*", "admin-*"], ["svc-*", "batch-*"],
               ["*-ops", "svc-*", "tool-*"], ["svc-web*", "svc-payments*", "svc-db*", "admin-*"]]
DENY_LISTS = [["svc-untrusted*"], ["*-canary"], ["svc-untrusted*", "batch-*"], ["tool-curl*"]]
IDENTITY_RULES = [
    {"identity_pattern": "svc-payments*", "trust_adjustment": 0.1, "syscall_patterns": ["open*", "connect"]},
    {"identity_pattern": "*-canary", "trust_adjustment": -0.2},
    {"identity_pattern": "admin-ops", "trust_adjustment": 0.25},
    {"identity_pattern": "svc-web*", "trust_adjustment": 0.05, "syscall_patterns": ["send*", "recv*"]},
    {"identity_pattern": "batch-*", "trust_adjustment": -0.1},
    {"identity_pattern": "tool-*", "trust_adjustment": -0.05, "syscall_patterns": ["exec*"]},
    {"identity_pattern": "svc-db*", "trust_adjustment": 0.15, "syscall_patterns": ["read", "write", "p*64"]},
    {"identity_pattern": "admin-*", "trust_adjustment": 0.05},
]


class Workload(NamedTuple):
    doc: dict[str, Any]
    identities: list[dict[str, Any]]  # name, trust (None = unseen), tenant, team
    records: list[dict[str, Any]]  # docs/behaviour.md §1.1 event records
    trusts: list[float | None]  # the fixed adaptive trust of each record's identity


def build_workload(n_events: int, seed: int) -> Workload:
    rng = random.Random(seed)
    doc = _policy_doc(rng)
    identities = _identities(rng)
    kind_of = {s: k for k, names in KINDS.items() for s in names}
    covered = list(doc["policies"])
    uncovered = [s for s in kind_of if s not in doc["policies"]]
    records, trusts = [], []
    for i in range(n_events):
        ident = rng.choice(identities)
        # most traffic is syscalls the policy covers; the rest is denied by default
        syscall = rng.choice(covered if rng.random() < 0.95 else uncovered)
        records.append(_event(rng, i, ident, syscall, kind_of[syscall]))
        trusts.append(ident["trust"])
    return Workload(doc, identities, records, trusts)


def _policy_doc(rng: random.Random) -> dict[str, Any]:
    policies = {}
    for kind, names in KINDS.items():
        for syscall in names:
            if rng.random() < 0.15:
                continue  # no policy: default deny (no_policy)
            policies[syscall] = _syscall_policy(rng, kind)
    return {"version": f"bench-{rng.randrange(10**6)}", "default_action": "deny",
            "enforcement_mode": "enforce", "trust_thresholds": {"quarantine": 0.2},
            "trust_model": {"baseline": 0.7, "ceiling": 1.0, "violation_penalty": 0.15,
                            "recovery_rate": 0.01},
            "identity_rules": IDENTITY_RULES, "policies": policies}


def _syscall_policy(rng: random.Random, kind: str) -> dict[str, Any]:
    p: dict[str, Any] = {}
    min_trust = rng.choice([0.0, 0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7])
    if min_trust:
        p["min_trust_score"] = min_trust
    if rng.random() < 0.6:
        p["allowed_identities"] = rng.choice(ALLOW_LISTS)
    if rng.random() < 0.4:
        p["denied_identities"] = rng.choice(DENY_LISTS)
    if ARG_RULES[kind] and rng.random() < 0.7:
        p["arg_constraints"] = rng.choice(ARG_RULES[kind])
    if kind in ("file", "exec") and rng.random() < 0.35:
        p["custom_validator"] = "no_path_traversal"
    if rng.random() < 0.3:
        p["violation_action"] = rng.choice(["block", "quarantine"])
    return p


def _identities(rng: random.Random) -> list[dict[str, Any]]:
    out = [{"name": "admin-ops", "trust": 0.8}]
    for family, count in FAMILIES:
        for i in range(count):
            unseen = rng.random() < 0.1
            trust = None if unseen else round(rng.uniform(0.55, 1.0), 4)
            out.append({"name": f"{family}-{i}", "trust": trust,
                        "tenant": rng.choice(["acme", "globex", "initech"]),
                        "team": family.rsplit("-", 1)[-1]})
    out[0].update(tenant="acme", team="ops")
    return out


def _event(rng: random.Random, i: int, ident: dict, syscall: str, kind: str) -> dict[str, Any]:
    name = ident["name"]
    rec: dict[str, Any] = {
        "event_id": f"e-{i}", "syscall": syscall, "args": _args(rng, kind),
        "identity": {"id": name, "process_id": f"{name}-p{rng.randrange(4)}", "container_id": "c-1",
                     "tenant": ident["tenant"], "labels": {"team": ident["team"]}},
        "timestamp": NOW,
    }
    if rng.random() < 0.85:
        rec["trust_vector"] = {"score": round(rng.uniform(0.5, 1.0), 3)}
    return rec


def _args(rng: random.Random, kind: str) -> list[str]:
    """Arguments from finite pools (shims repeat themselves), some violating."""
    k = rng.randrange(300)
    if kind == "file":
        path = rng.choice([f"/tmp/job-{k}.log", f"/var/lib/app/{k}.db", f"/srv/data/{k}"] * 4
                          + ["/etc/shadow", f"/home/u{k % 20}/.ssh/id_rsa", f"/tmp/{k % 9}/../../etc/passwd"])
        args = [path, rng.choice(["r", "rb", "w", "a", "r+"]), "0644"]
    elif kind == "net":
        args = [f"10.{rng.choice([0, 0, 0, 1])}.{k % 16}.{k}", rng.choice(["443", "443", "8443", "53", "22"])]
    elif kind == "exec":
        args = [rng.choice(["/usr/bin/python3", "/bin/sh", f"/tmp/x{k % 10}", "/usr/bin/../../tmp/x"]), "-c"]
    elif kind == "mem":
        args = [f"0x7f{k:04x}000", str(4096 * (1 + k % 8))]
    else:
        args = [str(k)]
    # an argument may be missing (arg_missing)
    return args[:rng.choice([len(args)] * 9 + [max(0, len(args) - 2)])]


# ---------------------------------------------------------------- Cedar translation

_REGEX_META = frozenset(".^$*+?{}[]\\|()")


def _q(s: str) -> str:
    """A Cedar string literal (ASCII only, so JSON escaping is Cedar escaping)."""
    if not s.isascii():
        raise ValueError(f"non-ASCII literal `{s}`")
    return json.dumps(s)


def _glob(var: str, pattern: str) -> str:
    if "?" in pattern or "[" in pattern:
        raise ValueError(f"glob `{pattern}` has no Cedar `like` equivalent")
    return f"{var} like {_q(pattern)}" if "*" in pattern else f"{var} == {_q(pattern)}"


def _regex(var: str, rx: str) -> str:
    """The exact Cedar form of a regex made of literal alternatives, each maybe ending `.*`."""
    alts = []
    for alt in rx.split("|"):
        stem, wild = (alt[:-2], True) if alt.endswith(".*") else (alt, False)
        if _REGEX_META & set(stem.replace("\\.", "")):  # only `\.` (a literal dot) is allowed
            raise ValueError(f"regex `{rx}` has no exact Cedar equivalent")
        literal = stem.replace("\\.", ".")
        alts.append(f"{var} like {_q(literal + '*')}" if wild else f"{var} == {_q(literal)}")
    return "(" + " || ".join(alts) + ")"


def _trust_expr(doc: dict, syscall: str) -> str:
    base = "(if context has score && context.score < principal.trust then context.score else principal.trust)"
    terms = [base]
    for rule in doc.get("identity_rules", []):
        sys_patterns = rule.get("syscall_patterns")
        if sys_patterns is not None and not any(fnmatchcase(syscall, p) for p in sys_patterns):
            continue  # resolved statically: the action is fixed in this permit
        adj = round(rule["trust_adjustment"] * MICRO)
        terms.append(f"(if {_glob('principal.name', rule['identity_pattern'])} then {adj} else 0)")
    return " + ".join(terms)


def _no_path_traversal() -> str:
    def ok(a: str) -> str:
        return f'!({a} == ".." || {a} like "../*" || {a} like "*/.." || {a} like "*/../*")'
    return " && ".join(f"(!(context has a{i}) || {ok(f'context.a{i}')})" for i in range(MAX_ARGS))


def _conditions(doc: dict, syscall: str, p: dict) -> list[str]:
    """The checks of docs/behaviour.md §2 in order, as Cedar conditions."""
    conds = []
    if p.get("denied_identities") is not None:
        conds.append("!(" + " || ".join(_glob("principal.name", g) for g in p["denied_identities"]) + ")")
    if p.get("allowed_identities") is not None:
        conds.append("(" + " || ".join(_glob("principal.name", g) for g in p["allowed_identities"]) + ")")
    if p.get("min_trust_score", 0):
        conds.append(f"{_trust_expr(doc, syscall)} >= {round(p['min_trust_score'] * MICRO)}")
    for index, rx in sorted(p.get("arg_constraints", {}).items()):
        conds.append(f"context has a{index} && {_regex(f'context.a{index}', rx)}")
    validator = p.get("custom_validator")
    if validator == "no_path_traversal":
        conds.append(_no_path_traversal())
    elif validator is not None:
        raise ValueError(f"validator `{validator}` has no Cedar translation")
    return conds


def cedar_permits(doc: dict) -> dict[str, str]:
    """syscall -> its Cedar permit; refuses what Cedar cannot say exactly."""
    if doc.get("default_action", "deny") != "deny" or doc.get("enforcement_mode", "enforce") != "enforce":
        raise ValueError("only default_action deny in enforce mode is translated")
    out = {}
    for syscall, p in doc["policies"].items():
        if any(c in syscall for c in "*?["):
            raise ValueError(f"glob policy key `{syscall}` is not translated")
        lenient = p.get("violation_action") in ("warn", "allow")
        if lenient or p.get("enforcement_mode", "enforce") != "enforce":
            raise ValueError(f"policy `{syscall}` would allow violations; not translated")
        when = " &&\n  ".join(_conditions(doc, syscall, p)) or "true"
        head = f"permit (principal, action == Action::{_q(syscall)}, resource)"
        out[syscall] = f"{head}\nwhen {{\n  {when}\n}};"
    return out


def _micro(x: float) -> int:
    return round(x * MICRO)


def cedar_entities(w: Workload) -> str:
    baseline = w.doc["trust_model"]["baseline"]
    ents = [{"uid": {"type": "Identity", "id": i["name"]}, "parents": [],
             "attrs": {"name": i["name"], "trust": _micro(baseline if i["trust"] is None else i["trust"]),
                       "tenant": i["tenant"], "team": i["team"]}}
            for i in w.identities]
    ents.append({"uid": {"type": "Host", "id": "node-1"}, "attrs": {}, "parents": []})
    return json.dumps(ents)


# The request forms the sweep tries: entity uids as {"type", "id"} dicts or as
# Cedar surface strings (parsed by Cedar per request); context as a dict
# (cedarpy json.dumps it) or pre-serialised JSON.
REQUEST_FORMS = {"uid-dict/ctx-dict": (True, False), "uid-dict/ctx-json": (True, True),
                 "uid-str/ctx-json": (False, True)}


def cedar_requests(w: Workload, form: str) -> list[dict[str, Any]]:
    uid_dicts, ctx_json = REQUEST_FORMS[form]

    def uid(kind: str, name: str) -> Any:
        return {"type": kind, "id": name} if uid_dicts else f"{kind}::{_q(name)}"

    reqs = []
    for rec in w.records:
        if len(rec["args"]) > MAX_ARGS:  # _no_path_traversal checks MAX_ARGS arguments
            raise ValueError(f"more than {MAX_ARGS} arguments in {rec['event_id']}")
        ctx: dict[str, Any] = {f"a{i}": a for i, a in enumerate(rec["args"])}
        if "trust_vector" in rec:
            ctx["score"] = _micro(rec["trust_vector"]["score"])
        reqs.append({"principal": uid("Identity", rec["identity"]["id"]),
                     "action": uid("Action", rec["syscall"]), "resource": uid("Host", "node-1"),
                     "context": json.dumps(ctx) if ctx_json else ctx})
    return reqs


# ---------------------------------------------------------------- runners

# Each runner decides the whole workload once per call.

def engine_runner(cp, ctxs, trusts) -> Callable[[], None]:
    def run():
        ev = evaluate
        for ctx, t in zip(ctxs, trusts):
            ev(cp, ctx, t, None, NOW)
    return run


# A chunk is one is_authorized_batch call: (policy set, requests, their positions).

def one_set_chunks(requests, ps, batch: int) -> list[tuple[Any, list, range]]:
    """Every request against the one policy set holding every permit (the plain translation)."""
    n = len(requests)
    return [(ps, requests[i:i + batch], range(i, min(i + batch, n))) for i in range(0, n, batch)]


def per_action_chunks(requests, syscalls, permits, batch: int) -> list[tuple[Any, list, list[int]]]:
    """Requests grouped by action, each group against a policy set of its own permit only.

    Cedar evaluates every policy of a set for every request (its cost grows
    with the number of policies), so this is Cedar indexed by hand, the way
    the engine indexes by syscall.  Grouping is done here, before timing.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(syscalls):
        groups.setdefault(s, []).append(i)
    out = []
    for s, idx in groups.items():
        ps = cedarpy.PolicySet.from_str(permits.get(s, ""))  # no permit: deny, like default_action
        for j in range(0, len(idx), batch):
            part = idx[j:j + batch]
            out.append((ps, [requests[i] for i in part], part))
    return out


def cedar_runner(chunks, ents) -> Callable[[], list]:
    authorize = cedarpy.is_authorized_batch

    def run():
        return [authorize(reqs, ps, ents) for ps, reqs, _ in chunks]
    return run


def _rates(runners: dict[str, tuple[Callable[[], Any], int]], reps: int) -> dict[str, dict]:
    """Warm each runner up, then time them in turns, `reps` rounds: the
    background load of a shared machine then falls on all of them alike."""
    for run, _ in runners.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(reps):
        for name, (run, n) in runners.items():
            gc.collect()
            t0 = time.perf_counter()
            run()
            rates[name].append(n / (time.perf_counter() - t0))
    return {name: {"rate": statistics.median(r), "reps": r} for name, r in rates.items()}


def sweep(make_runner: Callable[[Any, int], Callable], forms: list, sizes: list[int], n: int,
          label: str) -> list[dict]:
    """Median rate of each (request form, batch size) over `n` requests, 2 timed runs each."""
    out = []
    for form in forms:
        for size in sizes:
            rate = _rates({"x": (make_runner(form, size), n)}, 2)["x"]["rate"]
            out.append({"batch": size, "form": form, "rate": rate})
            print(f"  {label} batch {size:>6} {form:<18}: {rate:>10,.0f} ev/s", flush=True)
    return out


# ---------------------------------------------------------------- extra engine figures

def cold_rate(doc: dict, ctxs, trusts) -> float:
    """One pass over a freshly loaded policy: every plan and memo is built on the way."""
    cp = load_policy(doc)
    t0 = time.perf_counter()
    engine_runner(cp, ctxs, trusts)()
    return len(ctxs) / (time.perf_counter() - t0)


def cedar_floor_runner(w: Workload, ents, batch: int) -> Callable[[], list]:
    """cedarpy's per-request overhead: one unconditional permit, empty context."""
    ps = cedarpy.PolicySet.from_str("permit (principal, action, resource);")
    reqs = [{"principal": {"type": "Identity", "id": r["identity"]["id"]},
             "action": {"type": "Action", "id": r["syscall"]},
             "resource": {"type": "Host", "id": "node-1"}, "context": {}} for r in w.records]
    return cedar_runner(one_set_chunks(reqs, ps, batch), ents)


# ---------------------------------------------------------------- agreement

def engine_outcomes(cp, ctxs, trusts) -> list:
    return [evaluate(cp, c, t, None, NOW) for c, t in zip(ctxs, trusts)]


def cedar_allowed(chunks, ents, n: int) -> list[bool]:
    out = [False] * n
    for ps, reqs, idx in chunks:
        for i, r in zip(idx, cedarpy.is_authorized_batch(reqs, ps, ents)):
            out[i] = r.allowed
    return out


def compare(results, cedar: list[bool], ctxs, label: str) -> int:
    """Print the agreement count and the first disagreements; return how many disagree."""
    bad = [i for i, (r, a) in enumerate(zip(results, cedar)) if r.allowed != a]
    print(f"agreement ({label}): {len(results) - len(bad)}/{len(results)} requests decided alike")
    for i in bad[:10]:
        c, r = ctxs[i], results[i]
        print(f"  DISAGREE {c.event_id} {c.identity.id} {c.syscall} {c.args}: "
              f"engine allowed={r.allowed} ({r.reason}), cedar allowed={cedar[i]}")
    return len(bad)


# ---------------------------------------------------------------- main

def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "cedarpy": dist_version("cedarpy"),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer events, repetitions, batch sizes")
    ap.add_argument("--events", type=int, help="events in the workload (default 60000, quick 20000)")
    ap.add_argument("--reps", type=int, help="timed repetitions after warm-up (default 5, quick 3)")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    a = ap.parse_args(argv)
    a.events = a.events or (20_000 if a.quick else 60_000)
    a.reps = a.reps or (3 if a.quick else 5)
    a.sweep_events = min(a.events, 5_000 if a.quick else 10_000)
    a.sizes = [100, 1000] if a.quick else [10, 100, 1000, 10000]
    a.forms = list(REQUEST_FORMS)[:2] if a.quick else list(REQUEST_FORMS)
    return a


class Inputs(NamedTuple):
    w: Workload
    cp: Any  # CompiledPolicy
    ctxs: list  # SyscallContext per event
    permits: dict[str, str]  # syscall -> Cedar permit
    ps: Any  # every permit in one cedarpy PolicySet
    ents: Any  # cedarpy Entities
    reqs: dict[str, list[dict]]  # request form -> Cedar requests

    def per_action(self, form: str, batch: int, k: int | None = None):
        syscalls = [c.syscall for c in self.ctxs[:k]]
        return per_action_chunks(self.reqs[form][:k], syscalls, self.permits, batch)


def prepare(a: argparse.Namespace) -> Inputs:
    w = build_workload(a.events, a.seed)
    permits = cedar_permits(w.doc)
    return Inputs(w, load_policy(w.doc), [context_from_record(r) for r in w.records], permits,
                  cedarpy.PolicySet.from_str("\n\n".join(permits.values())),
                  cedarpy.Entities.from_json_str(cedar_entities(w)),
                  {form: cedar_requests(w, form) for form in a.forms})


def check_agreement(x: Inputs, form: str) -> tuple[int, dict[str, int]]:
    """Decide everything with both engines; print outcomes and agreement; count disagreements."""
    results = engine_outcomes(x.cp, x.ctxs, x.w.trusts)
    reasons: dict[str, int] = {}
    for r in results:
        key = "compliant" if r.reason_code is None else r.reason_code.value
        reasons[key] = reasons.get(key, 0) + 1
    n, ok = len(results), reasons.get("compliant", 0)
    by_count = sorted(((k, v) for k, v in reasons.items() if k != "compliant"), key=lambda kv: -kv[1])
    print(f"outcomes: {ok} compliant, {n - ok} violations ({', '.join(f'{k} {v}' for k, v in by_count)})")
    disagree = compare(results, cedar_allowed(one_set_chunks(x.reqs[form], x.ps, 1000), x.ents, n),
                       x.ctxs, "one policy set")
    disagree += compare(results, cedar_allowed(x.per_action(form, 1000), x.ents, n), x.ctxs,
                        "policy set per action")
    return disagree, reasons


def choose_cedar_batches(x: Inputs, a: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Sweep batch sizes and request forms on the first requests, for each way of calling Cedar."""
    k = a.sweep_events
    print(f"cedarpy batch sweep (median of 2 runs each, first {k} requests):", flush=True)
    one = sweep(lambda form, size: cedar_runner(one_set_chunks(x.reqs[form][:k], x.ps, size), x.ents),
                a.forms, a.sizes, k, "one set   ")
    form = max(one, key=lambda r: r["rate"])["form"]
    per_action = sweep(lambda form, size: cedar_runner(x.per_action(form, size, k), x.ents),
                       [form], a.sizes, k, "per action")
    return one, per_action


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    load_start = os.getloadavg()
    x = prepare(a)
    n = len(x.ctxs)
    print(f"workload: {len(x.permits)} policies, {len(x.w.identities)} identities, "
          f"{len(x.w.doc['identity_rules'])} identity rules, {n} events (seed {a.seed})")
    disagree, reasons = check_agreement(x, a.forms[0])
    gc.freeze()  # the inputs are long-lived: keep the collector from rescanning them

    one, per_action = choose_cedar_batches(x, a)
    b1, b2 = max(one, key=lambda r: r["rate"]), max(per_action, key=lambda r: r["rate"])
    print(f"timing {a.reps} rounds, runners in turn, after one warm-up each ...", flush=True)
    timed = _rates({
        "engine evaluate": (engine_runner(x.cp, x.ctxs, x.w.trusts), n),
        "cedarpy one set": (cedar_runner(one_set_chunks(x.reqs[b1["form"]], x.ps, b1["batch"]), x.ents), n),
        "cedarpy per action": (cedar_runner(x.per_action(b2["form"], b2["batch"]), x.ents), n),
        "cedarpy floor": (cedar_floor_runner(x.w, x.ents, b1["batch"]), n),
    }, a.reps)
    for name, t in timed.items():
        print(f"  {name:<20}: {t['rate']:>12,.0f} ev/s  (median of {a.reps}; "
              f"min {min(t['reps']):,.0f}, max {max(t['reps']):,.0f})")
    cold = cold_rate(x.w.doc, x.ctxs, x.w.trusts)
    print(f"  engine, cold first pass (fresh policy, empty memos): {cold:>12,.0f} ev/s")

    engine_rate = timed["engine evaluate"]["rate"]
    cedar_best = max(("cedarpy one set", "cedarpy per action"), key=lambda k: timed[k]["rate"])
    ratio = engine_rate / timed[cedar_best]["rate"]
    print(f"ratio: engine evaluate / {cedar_best} = {ratio:.1f}x  "
          f"(/ cedarpy one set = {engine_rate / timed['cedarpy one set']['rate']:.1f}x)")
    report = {
        "events": n, "reps": a.reps, "seed": a.seed, "quick": a.quick,
        "workload": {"policies": len(x.permits), "identities": len(x.w.identities),
                     "identity_rules": len(x.w.doc["identity_rules"]), "outcomes": reasons},
        "engine": {"evaluate": timed["engine evaluate"], "cold_first_pass_rate": cold},
        "cedarpy": {
            # batch and form as chosen by the sweep; rate and reps as timed
            "one_policy_set": {**b1, **timed["cedarpy one set"], "sweep": one},
            "policy_set_per_action": {**b2, **timed["cedarpy per action"], "sweep": per_action},
            "floor_one_unconditional_permit": timed["cedarpy floor"],
        },
        "ratio": ratio, "ratio_against": cedar_best,
        "ratio_one_policy_set": engine_rate / timed["cedarpy one set"]["rate"],
        "agreement": {"total": n, "disagreements": disagree},
        "machine": machine(), "loadavg": {"start": load_start, "end": os.getloadavg()},
        "notes": NOTES,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 1 if disagree else 0


NOTES = [
    "trust held fixed per identity: the same T goes to evaluate() as `adaptive` and to Cedar as "
    "the entity attribute `trust`; no process in the redzone",
    "engine rates are warm (plans and memos filled by the warm-up pass); cold_first_pass_rate is "
    "the first pass over a freshly loaded policy",
    "arg regexes are limited to literal alternatives with an optional trailing `.*`, translated "
    "exactly to Cedar like/==; trust is compared in integer micro-units in Cedar",
    "runners are timed in turns (engine, cedar, cedar, engine, ...) so background load hits all alike",
]


if __name__ == "__main__":
    sys.exit(main())
