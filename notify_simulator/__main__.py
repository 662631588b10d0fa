"""`python -m notify_simulator [--port 8102] [--log-file messages.jsonl]` (settings from NOTIFY_SIM_*)."""
from __future__ import annotations

import sys

import uvicorn

from notify_simulator.app import create_app
from notify_simulator.settings import from_args


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve."""
    settings = from_args(argv)
    print(f"Notify simulator on http://{settings.host}:{settings.port} (v2 API, control at /_control)",
          file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
