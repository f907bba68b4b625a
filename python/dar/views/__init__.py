"""What a person reads: the session model, the terminal UI, the web UI and the HTML report.
Every text from the log passes through `dar.terminal` before it reaches a terminal.

May import: `dar.integrations` and every layer below it.
"""
