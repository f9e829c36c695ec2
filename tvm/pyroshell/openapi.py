"""The gateway's OpenAPI schema, generated from the app and checked in as
``docs/openapi.json`` (a test fails when it is stale).

Regenerate: ``python -m tvm.pyroshell.openapi`` (writes docs/openapi.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tvm.config.settings import Settings

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def schema() -> dict[str, Any]:
    from tvm.pyroshell.app import create_gateway_app

    generated: dict[str, Any] = create_gateway_app(Settings()).openapi()
    return generated


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
