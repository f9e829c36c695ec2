"""Judge0's submission statuses: the one table of ids and descriptions.

The gateway's store keeps a submission's ``status_id`` in these ids, so the
queue states (In Queue, Processing) and the verdicts share one numbering.
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    IN_QUEUE = 1
    PROCESSING = 2
    ACCEPTED = 3
    WRONG_ANSWER = 4
    TIME_LIMIT_EXCEEDED = 5
    COMPILATION_ERROR = 6
    SIGSEGV = 7
    SIGXFSZ = 8
    SIGFPE = 9
    SIGABRT = 10
    NZEC = 11
    OTHER = 12
    INTERNAL_ERROR = 13
    EXEC_FORMAT_ERROR = 14


DESCRIPTIONS: dict[Status, str] = {
    Status.IN_QUEUE: "In Queue",
    Status.PROCESSING: "Processing",
    Status.ACCEPTED: "Accepted",
    Status.WRONG_ANSWER: "Wrong Answer",
    Status.TIME_LIMIT_EXCEEDED: "Time Limit Exceeded",
    Status.COMPILATION_ERROR: "Compilation Error",
    Status.SIGSEGV: "Runtime Error (SIGSEGV)",
    Status.SIGXFSZ: "Runtime Error (SIGXFSZ)",
    Status.SIGFPE: "Runtime Error (SIGFPE)",
    Status.SIGABRT: "Runtime Error (SIGABRT)",
    Status.NZEC: "Runtime Error (NZEC)",
    Status.OTHER: "Runtime Error (Other)",
    Status.INTERNAL_ERROR: "Internal Error",
    Status.EXEC_FORMAT_ERROR: "Exec Format Error",
}

# A fatal signal's own status; any other signal is Status.OTHER.
SIGNAL_STATUS: dict[str, Status] = {
    "SIGSEGV": Status.SIGSEGV,
    "SIGXFSZ": Status.SIGXFSZ,
    "SIGFPE": Status.SIGFPE,
    "SIGABRT": Status.SIGABRT,
}


def describe(status_id: int) -> dict[str, object]:
    """Judge0's ``status`` attribute: ``{"id": 3, "description": "Accepted"}``."""
    return {"id": status_id, "description": DESCRIPTIONS[Status(status_id)]}
