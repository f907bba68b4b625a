# docs/event-log.md's redaction example, run: the phone number never reaches the database file.
from pathlib import Path

from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_EXTERNAL, redact=["customer.phone", "address.*", "output.to"])
def send_whatsapp(customer: dict, address: dict, text: str) -> dict:
    return {"to": customer["phone"], "status": "sent"}

Path("redacted.db").unlink(missing_ok=True)
with Runtime("sqlite:///redacted.db", tools=[send_whatsapp]) as rt:
    res = rt.call("send_whatsapp", {"customer": {"phone": "+51951234567"},
                                    "address": {"town": "Puno"}, "text": "Your order shipped"})
    print(res.status, res.output)
assert b"51951234567" not in Path("redacted.db").read_bytes()
