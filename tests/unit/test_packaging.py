"""The project installs like a package: the wheel carries the schemas and the Kafka pom.

The Avro schemas stay in the top-level `schemas/` and the pom in
`deploy/kafka/`; pyproject.toml maps them into the wheel as the data packages
`streams._schemas` and `streams.stack._kafka`, where the code looks first.
The wheel is built from a copy of the source tree (nothing is written into
the checkout), without build isolation (no network: the venv's setuptools).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from streams.codec import avro
from streams.settings import Settings
from streams.stack import kafka

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", ".stack", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".hypothesis", "tests", "benchmarks", "examples")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "-q", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = (tmp / "dist").glob("forgeone_trust-*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf


def test_wheel_holds_every_avro_schema(wheel):
    names = set(wheel.namelist())
    schemas = sorted((REPO / "schemas").glob("*.avsc"))
    assert schemas, "no schemas in the source tree"
    for path in schemas:
        inside = f"streams/_schemas/{path.name}"
        assert inside in names, f"{path.name} is not in the wheel"
        assert wheel.read(inside) == path.read_bytes()
    assert "streams/audit/schemas/forgeone.trust.AuditRecord.avsc" in names


def test_wheel_holds_the_kafka_pom(wheel):
    assert wheel.read("streams/stack/_kafka/pom.xml") == (REPO / "deploy" / "kafka" / "pom.xml").read_bytes()


def test_wheel_holds_every_package_of_the_source_tree(wheel):
    """pyproject.toml lists the packages (mapped data packages rule out `find`): none may be missing."""
    names = set(wheel.namelist())
    for init in sorted((REPO / "streams").rglob("__init__.py")):
        inside = init.relative_to(REPO).as_posix()
        assert inside in names, f"{inside} is missing: add its package to [tool.setuptools] packages"


def test_wheel_declares_trustctl(wheel):
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "trustctl = streams.cli.main:main" in wheel.read(entry_points).decode()


def test_source_tree_uses_the_top_level_schemas_and_pom():
    assert avro._schema_dir(Settings()) == REPO / "schemas"
    assert kafka.POM == REPO / "deploy" / "kafka" / "pom.xml"


def test_trust_schema_dir_overrides(tmp_path):
    settings = Settings.from_env({"TRUST_SCHEMA_DIR": str(tmp_path)})
    assert avro._schema_dir(settings) == tmp_path
