# A cell as a model would write it: look at the document, search it, and report
# where the evidence is. It runs inside the hardened sandbox.
import os
import re
import socket

print(f"context: {len(context):,} characters in {len(documents)} document(s): {[d.name for d in documents]}")
print("first line:", context[: context.find(chr(10))])
hits = [(m.start(), context[m.start(): m.start() + 140]) for m in re.finditer(r"termination fee", context)]
for offset, text in hits:
    print(f"found at offset {offset}: {text!r}")
print("sandbox: uid", os.getuid(), "| interfaces", [name for _, name in socket.if_nameindex()])
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)
    print("network: reachable (this must never happen)")
except OSError as exc:
    print("network: unreachable, as it must be:", exc.strerror or exc)
