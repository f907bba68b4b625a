# docs/canonical-json.md's examples, run.
import datetime
import dar
dar.canonical_json({"b": [1.0, -0.0, 1e21], "a": "é"})   # b'{"a":"\xc3\xa9","b":[1,0,1e+21]}'
dar.input_hash({"order_id": "ORD-1"})                    # 64 lowercase hex chars (SHA-256)
dar.input_hashes([{"n": 1}, {"n": 2}, {"n": 3}])         # many at once
dar.canonical_json_from_text('{"b":1,"a":2}')            # parse + canonicalize in Rust
dar.input_hash_from_text('{"order_id": "ORD-1"}')        # LLM arguments arrive as JSON text
dar.canonical_json({"at": datetime.date(2026, 11, 28)}, default=str)  # as json.dumps does

assert dar.canonical_json({"b": [1.0, -0.0, 1e21], "a": "é"}) == b'{"a":"\xc3\xa9","b":[1,0,1e+21]}'
assert dar.input_hash_from_text('{"order_id": "ORD-1"}') == dar.input_hash({"order_id": "ORD-1"})
