"""Every module of the package imports on its own, first thing in a fresh interpreter, as an
embedder or a tool (uvicorn's factory, alembic, a script) may import it."""

import importlib
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# The import root and the folders mapped under it (pyproject's package-dir).
PACKAGES = ["sessiongraph", "sessiongraph.cli", "sessiongraph.transport", "sessiongraph.gate", "sessiongraph.schema", "sessiongraph.resolvers", "sessiongraph.loaders", "sessiongraph.models", "sessiongraph.live", "sessiongraph.ingest", "sessiongraph.planner", "sessiongraph.explorer", "sessiongraph.observability"]


def modules() -> list[str]:
    found = list(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        found += [f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if f"{package}.{m.name}" not in PACKAGES]
    return sorted(found)


def import_alone(module: str) -> str | None:
    """None, or why `module` does not import in a fresh interpreter."""
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    return None if run.returncode == 0 else f"{module}: {run.stderr.strip().splitlines()[-1]}"


def test_every_module_imports_first():
    names = modules()
    assert len(names) > 30
    with ThreadPoolExecutor(4) as pool:
        failures = [failure for failure in pool.map(import_alone, names) if failure]
    assert failures == []
