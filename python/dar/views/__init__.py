"""What a person reads: the session model, the terminal UI, the web UI, the HTML report,
and the sanitizer every text from the log passes through before it reaches a terminal.

May import: `dar.integrations` and every layer below it.
"""
