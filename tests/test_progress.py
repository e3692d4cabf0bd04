import io

from skinray.progress import ProgressLine, bar


def test_terminal_line_is_rewritten_in_place_and_ended():
    stream = io.StringIO()
    line = ProgressLine(stream=stream, live=True)
    line.update("[skinray] ingest 10/20 files read")
    line.last = float("-inf")  # due again
    line.update("[skinray] ingest 9/20")
    line.update("[skinray] ingest 20/20", final=True)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("20/20\n")
    assert text.split("\r")[2].startswith("[skinray] ingest 9/20" + " " * 12), "a shorter line blanks the rest"


def test_plain_lines_at_most_every_interval_and_always_the_last():
    stream = io.StringIO()
    line = ProgressLine(every_s=3600, stream=stream, live=False)
    for done in range(1, 100):
        line.update(f"{done}/100")
    line.update("100/100", final=True)
    assert stream.getvalue() == "100/100\n"


def test_bar():
    assert bar(5, 10, width=10) == "[#####.....]" and bar(0, 0, width=4) == "[####]"
