"""Log lines of `sessiongraph serve`: plain text for a terminal, or one JSON object a line
(`--log-format json`) for log shippers; either way each line written while a request is
handled names its request id (the X-Request-Id the response carries)."""

import json
import logging
import time

from sessiongraph.schema.errors import current_request_id

FORMATS = ("text", "json")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = current_request_id.get()
        return f"{line} request_id={request_id}" if request_id else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := current_request_id.get():
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(log_format: str) -> dict:
    """The logging configuration of the server and (through uvicorn) of each worker process.
    uvicorn's own start-up and shutdown chatter is left out: sessiongraph says what matters
    (the address, the key, the database, a shutdown) in its own lines."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"level": "INFO"},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "INFO"},
            "alembic": {"level": "WARNING"},
        },
    }
