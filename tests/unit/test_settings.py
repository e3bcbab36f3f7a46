"""Every setting is in `Settings`, read once from the environment, and documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _from_env_names() -> set[str]:
    """The environment variables `Settings.from_env` reads (from its source)."""
    tree = ast.parse((ROOT / "streams" / "settings.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "from_env")
    return {n.value for n in ast.walk(fn) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value.startswith("TRUST_")}


def _readme_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `TRUST_")]
    return {name for row in rows for name in re.findall(r"`(TRUST_[A-Z_]+)`", row.split(" | ")[0])}


def test_the_readme_table_lists_every_variable_settings_reads():
    assert _from_env_names() == _readme_names()


def test_no_module_reads_a_trust_variable_outside_settings():
    offenders = []
    for path in (ROOT / "streams").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for m in re.finditer(r"environ(?:\.get)?\(?\[?\s*[\"'](TRUST_[A-Z_]+)", path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    assert offenders == []


def test_defaults_work_on_the_local_stack():
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.kafka_bootstrap, s.redis_url, s.partitions, s.topic("events")) == \
        ("127.0.0.1:9092", "redis://127.0.0.1:6379/0", 6, "trust.syscall-events")


def test_each_variable_lands_in_its_field():
    s = Settings.from_env({"TRUST_PARTITIONS": "12", "TRUST_FETCH_WAIT_MS": "10", "TRUST_CODEC_COMPILED": "0",
                           "TRUST_TOPIC_PREFIX": "x.", "TRUST_OPERATOR_TOKEN": "t0k"})
    assert (s.partitions, s.fetch_wait_ms, s.codec_compiled, s.topic("dlq")) == (12, 10, False, "x.dlq")
    assert "t0k" not in repr(s)  # secrets never printed


def test_a_bad_number_names_the_variable():
    with pytest.raises(ConfigError, match="`TRUST_PARTITIONS` must be a whole number, got `six`"):
        Settings.from_env({"TRUST_PARTITIONS": "six"})
