"""`python -m contractors.simulator [--port 8100] [--step-seconds 5] [--callback-url http://…]`."""
from __future__ import annotations

import sys

import uvicorn

from contractors.simulator.app import create_app
from contractors.simulator.settings import from_args


def main(argv: list[str] | None = None) -> None:
    """Parse flags over SIM_* variables and serve."""
    settings = from_args(argv)
    print(f"contractor simulator on http://{settings.host}:{settings.port} "
          f"(street lighting at /, Open311 at /open311, control at /_control)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
