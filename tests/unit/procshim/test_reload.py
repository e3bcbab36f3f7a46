"""A policy coming into force while the shim runs: what changes, what it says (pure)."""

from __future__ import annotations

from streams.procshim.reload import SHOWN, switch
from streams.procshim.trapset import plan_for_policy
from tests.conftest import make_policy

V1 = {"connect": {}, "openat": {"isolation_level": "network"}}


def running(policies=V1, **top):
    return plan_for_policy(make_policy(policies, **{"default_action": "allow", **top}))


def test_a_policy_the_running_filter_covers_changes_only_the_classes():
    v2 = make_policy(V1, version="v2", default_action="allow",
                     syscall_classes={"network": ["connect", "sendto"]})
    sw = switch(v2, running(), "v1")
    assert sw.untrapped == () and sw.classes["network"] == frozenset({"connect", "sendto"})
    assert sw.describe() == "policy v2 in force (was v1); the running filter traps every syscall it needs"


def test_syscalls_the_new_policy_needs_and_the_filter_lacks_are_named():
    v2 = make_policy({**V1, "mount": {}, "open_file": {}, "unlink": {"isolation_level": "filesystem"}},
                     version="v2", default_action="allow")
    sw = switch(v2, running(), "v1")
    # a new key, and the filesystem class its isolation level brings in
    assert {"mount", "unlink", "read", "write"} <= set(sw.untrapped)
    assert "connect" not in sw.untrapped and sw.unseen == ("open_file",)
    text = sw.describe()
    assert "not seen until the program is started again" in text and "freezes the workload" in text
    assert text.splitlines()[1] == "not x86-64 syscalls, never seen: open_file"


def test_with_the_observer_a_new_catch_all_needs_only_its_named_keys():
    observed = running({"*": {}, "openat": {}}).with_observer()
    v2 = make_policy({"*": {}, "openat": {}, "mount": {}}, version="v2", default_action="allow")
    sw = switch(v2, observed, "v1")
    assert sw.untrapped == ("mount",) and sw.observed
    assert "the eBPF observer reports them" in sw.describe()


def test_a_filter_trapping_everything_lacks_nothing_and_long_lists_are_cut():
    assert switch(make_policy({}, version="v2"), running({"*": {}}), "v1").untrapped == ()
    wide = switch(make_policy({"*": {}}, version="v2", default_action="allow"), running(), "v1")
    assert len(wide.untrapped) > 300
    assert f"and {len(wide.untrapped) - SHOWN} more" in wide.describe()
