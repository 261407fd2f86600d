"""Log lines are JSON objects, one per physical line, whatever a message or a traceback holds."""

import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from strongroom.logs import JsonFormatter

MESSAGES = [
    'a "quoted" word',
    "a back\\slash and \\n not a newline",
    "two\nlines\r\nand a tab\t",
    "non-ASCII: naïve café, 東京, emoji \U0001f511, and a line separator \u2028 here",
    '{"message": "a JSON-looking message"}',
    "%s and %(name)s kept as they are",
    "",
]


def lines_of(text: str) -> list[dict[str, Any]]:
    """Each line of `text` parsed as one JSON object; a line that is not fails the test."""
    assert text.endswith("\n")
    parsed = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict)
        parsed.append(record)
    return parsed


def capture(emit: Any) -> list[dict[str, Any]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("strongroom.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    # Only "\n" ends a record: a message's own line breaks must be escaped in it.
    assert stream.getvalue().count("\n") == len(stream.getvalue().splitlines())
    return lines_of(stream.getvalue())


@pytest.mark.parametrize("message", MESSAGES)
def test_a_message_is_one_json_line_that_parses_back_to_itself(message: str) -> None:
    [record] = capture(lambda log: log.warning(message))
    assert record["message"] == message
    assert record["level"] == "WARNING" and record["logger"] == "strongroom.test.logs"
    assert "exception" not in record
    assert record["time"].endswith("Z") and record["time"][10] == "T"


def test_arguments_are_merged_into_the_message() -> None:
    [record] = capture(lambda log: log.info('vault %s said "%s"', "a\nb", "ü"))
    assert record["message"] == 'vault a\nb said "ü"'


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError('bad "input"\nwith\\slashes and ünïcode')
        except ValueError:
            log.exception('failed: "%s"', "x\ny")

    [record] = capture(emit)
    assert record["message"] == 'failed: "x\ny"'
    assert record["level"] == "ERROR"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert 'ValueError: bad "input"\nwith\\slashes and ünïcode' in record["exception"]


def test_a_stack_is_kept_too() -> None:
    [record] = capture(lambda log: log.info("here", stack_info=True))
    assert record["message"] == "here" and "test_a_stack_is_kept_too" in record["stack"]


def test_the_command_line_logs_json_to_stderr() -> None:
    """`strongroom --log-level ...` as its entry point configures it, in a process of its own;
    the role run is a stand-in that logs."""
    script = (
        "import logging, sys\n"
        "from strongroom import cli\n"
        "def role(args):\n"
        "    log = logging.getLogger('strongroom.x')\n"
        "    log.debug('hidden at INFO')\n"
        "    log.info(args.subject)\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError:\n"
        "        log.exception('boom')\n"
        "cli._dev_token = role\n"
        "cli.main(['--log-level', 'INFO', 'dev-token', '--subject', sys.argv[1]])\n"
    )
    message = 'quote " backslash \\ newline \n and ü'
    done = subprocess.run(
        [sys.executable, "-c", script, message],
        capture_output=True,
        env=os.environ | {"PYTHONIOENCODING": "ascii"},  # the line is ASCII: no encoding error
        check=True,
        timeout=60,
    )
    assert done.stdout == b""
    records = lines_of(done.stderr.decode("ascii"))
    assert [r["message"] for r in records] == [message, "boom"]
    assert "ZeroDivisionError" in records[1]["exception"]
