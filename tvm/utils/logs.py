"""Logging: JSON lines (or plain text) to stderr and to ``$TVM_HOME/logs/<component>.log``."""

from __future__ import annotations

import json
import logging
import sys
import time

from tvm.config.settings import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "component"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings, component: str) -> None:
    """Send TVM's and uvicorn's logs to stderr and to the component's log file."""
    formatter: logging.Formatter = (
        JsonFormatter()
        if settings.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.logs_dir / f"{component}.log"))
    except OSError:
        pass
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check otherwise
    # nodesemver logs a traceback at INFO for every selector it cannot parse (a user's
    # "version": "bogus" is an ordinary 400, not news for the log).
    logging.getLogger("nodesemver").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
