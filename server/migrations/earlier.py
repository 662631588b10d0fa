"""An earlier migration's module, for a later one that builds on its SQL (kerbside_intake is redefined by
0005, 0011, 0013, 0014, 0016 and 0017, each from the one before)."""
import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).with_name('versions')


def migration(filename: str) -> ModuleType:
    """Load versions/<filename> as a module of its own (migrations are files, not an importable package)."""
    spec = importlib.util.spec_from_file_location(f'kerbside_migration_{filename.split("_")[0]}', VERSIONS / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
