"""Terminal output as a person would read it: colours, cursor moves, spinners and terminal queries dropped."""

from secrets_app import terminal_output


def test_terminal_output_is_cleaned():
    raw = (
        "\x1b[?25l\r\x1b[2K\x1b[36m⠋\x1b[0m Starting…\r\x1b[2K\x1b[1mBrowser didn't open?\x1b[22m"
        "\r\nline\x1b[4mX\x1b[24m"
    )
    assert terminal_output.clean_terminal_output(raw) == "Browser didn't open?\nlineX"


def test_cleaning_places_words_and_drops_queries():
    raw = (
        "\x1b[2GPaste\x1b[8Gcode\x1b[13Ghere\r\r\n\x1b[>0q\x1b[c\x1b_Gi=31,a=q;AAAA\x1b\\\x1b]7501;?\x07ok\x1b[?2026$p"
    )
    assert terminal_output.clean_terminal_output(raw) == " Paste code here\nok"
