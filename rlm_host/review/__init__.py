"""The record's readers: the HTML report, the terminal views, the list and diff of
runs, the live status line and the TUI. Nothing here writes a log.
"""
