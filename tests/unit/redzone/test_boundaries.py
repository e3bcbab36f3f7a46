"""Boundaries: the redzone's core is pure, and operators' surfaces never import the agents."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PURE = ("streams.redzone.model", "streams.redzone.analysis", "streams.redzone.view",
        "streams.redzone.memory", "streams.redzone.store")
IO_LIBRARIES = ("redis", "faust", "mode", "aiokafka", "confluent_kafka", "fastavro", "aiohttp")


def test_the_redzone_core_imports_no_io_library():
    code = (f"import sys\nimport {', '.join(PURE)}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({IO_LIBRARIES!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_operator_surfaces_and_the_redzone_never_import_the_agents():
    files = [ROOT / "streams/web.py", *(ROOT / "streams/redzone").glob("*.py"), *(ROOT / "streams/cli").glob("*.py")]
    assert len(files) > 10
    offenders = {str(f.relative_to(ROOT)): sorted(n for n in _imports(f) if n.startswith("streams.agents"))
                 for f in files}
    assert {f: n for f, n in offenders.items() if n} == {}
