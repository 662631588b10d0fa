"""The contractors package stands alone: importing all of it pulls in nothing from server/."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.contractors.conftest import ROOT

SCRIPT = r"""
import importlib, json, pkgutil, sys
import contractors
names = []
for info in pkgutil.walk_packages(contractors.__path__, "contractors."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
    names.append(info.name)
leaked = sorted(m for m in sys.modules if m == "server" or m.startswith("server."))
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def test_importing_every_contractors_module_imports_no_server_module():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["leaked"] == []
    # The walk really covered the package (so an empty list above means something).
    for expected in ("contractors.base", "contractors.registry", "contractors.signing",
                     "contractors.street_lighting.client", "contractors.open311.adapter",
                     "contractors.simulator.app"):
        assert expected in result["imported"]


def test_simulator_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "contractors.simulator", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    assert "--step-seconds" in out.stdout and "SIM_CALLBACK_URL" in out.stdout
