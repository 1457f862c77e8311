"""Running a command-line main with one-line errors (``soco.utils.cli``)."""

import pytest

from soco.utils.cli import run


def _main_failing_with(error: Exception):
    def main(argv):
        raise error

    return main


def test_status_of_main_is_returned_and_argv_passed_on():
    assert run(lambda argv: len(argv), ["a", "b", "c"]) == 3


@pytest.mark.parametrize(
    "error", [ValueError("x.pth: bad"), KeyError("MODEL.X"), TypeError("a list"), FileNotFoundError("y.pkl")]
)
def test_bad_input_is_one_line_on_stderr_and_status_2(capsys, error):
    assert run(_main_failing_with(error), []) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: {error}\n"


def test_a_bug_still_raises_with_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run(_main_failing_with(ZeroDivisionError("a bug")), [])
