"""Which syscalls the filter traps, from a policy (pure)."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.procshim.syscall_table import BY_NUMBER, X86_64
from streams.procshim.trapset import expand, plan_for_policy, plan_traps
from tests.conftest import make_policy


def test_table_is_a_bijection_with_known_numbers():
    assert X86_64["read"] == 0 and X86_64["openat"] == 257 and X86_64["execve"] == 59
    assert X86_64["clone3"] == 435 and X86_64["mseal"] == 462
    assert all(BY_NUMBER[n] == name for name, n in X86_64.items())


def test_globs_expand_over_the_table():
    assert set(expand("open*")) == {"open", "openat", "openat2", "open_by_handle_at", "open_tree",
                                    "open_tree_attr"}
    assert expand("open_file") == []


def test_keys_classes_custom_lists_and_gates_are_trapped_and_fake_names_reported():
    cp = make_policy({"open_file": {"isolation_level": "filesystem"}, "connect": {"isolation_level": "network"},
                      "ptrace": {"isolation_level": "custom",
                                                                  "isolation_syscalls": ["kill", "tgkill"]}},
                     default_action="allow")
    plan = plan_for_policy(cp, gate=["mount"])
    assert not plan.trap_all
    assert {"connect", "ptrace", "kill", "tgkill", "mount", "execve", "execveat"} <= plan.syscalls
    assert {"socket", "sendto", "openat", "unlink", "write"} <= plan.syscalls  # both classes
    assert "getpid" not in plan.syscalls and "newfstatat" not in plan.syscalls
    assert plan.gated == {"mount"}
    assert plan.unseen == ("open_file",)
    assert "never seen: open_file" in plan.describe()
    assert plan.filter_spec() == ",".join(str(n) for n in sorted(X86_64[s] for s in plan.syscalls))


def test_a_class_is_trapped_only_when_a_policy_isolates_with_it():
    plan = plan_for_policy(make_policy({"connect": {}, "openat": {"isolation_level": "network"}},
                                       default_action="allow"))
    assert {"connect", "openat", "socket", "sendto", "execve"} <= plan.syscalls  # network class
    assert not {"read", "write", "unlink"} & plan.syscalls  # no policy isolates `filesystem`
    full_only = plan_for_policy(make_policy({"connect": {}, "mount": {}}, default_action="allow"))
    assert full_only.syscalls == {"connect", "mount", "execve", "execveat"}


def test_catch_all_or_default_deny_traps_everything():
    star = plan_for_policy(make_policy({"*": {}}, default_action="allow"))
    assert star.trap_all and "`*`" in star.reason and star.filter_spec() == "all"
    deny = plan_for_policy(make_policy({"read": {}}))  # default_action deny by default
    assert deny.trap_all and deny.syscalls == frozenset(X86_64)


def test_gating_a_non_syscall_is_refused():
    with pytest.raises(ConfigError, match="`open_file`"):
        plan_traps([], default_deny=False, gate=["open_file"])
