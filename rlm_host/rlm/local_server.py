"""llama-cpp-python's OpenAI-compatible server, with the root prompt's fixed part read once per machine.

Run as ``python -m rlm_host.rlm.local_server [--prefix-state FILE --prefix-messages FILE] SERVER-ARGS``,
where SERVER-ARGS are ``python -m llama_cpp.server``'s own. Before it serves, the model's state
after the fixed opening messages (system prompt and worked example) is loaded from FILE; when FILE is
absent or unreadable, it is computed with one chat completion through the same code path as every
request, then saved (to a temporary name, renamed into place). llama-cpp-python reuses it through its
own prefix match, token by token: a request whose prompt does not begin with these tokens matches
fewer of them and reads the rest, so a state is never served to a prompt it does not belong to. The
file's name carries the model digest, the llama-cpp-python version, the context size and the
messages' hash (``local_lm.prefix_state``), so a new prompt or build gets a new file.

Why not the server's own ``--cache true --cache_type disk``: it saves the whole state after every
completion, logits rows included (about 300 MB for this vocabulary), and looks states up by the
longest prefix of every saved key; the fixed prefix is one small state (11.5 MB for the 0.5B).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

# A probe word in place of the question: the saved state ends in an open user turn that every real
# question replaces; the prefix match stops where they differ.
PROBE = "."


def warm(llama: Any, messages: list[dict[str, str]], state: Path) -> str:
    """Load the fixed prefix's state from ``state``, or compute and save it; say which, with the time."""
    started = time.monotonic()
    if state.is_file() and _load(llama, state):
        return f"loaded the fixed prefix ({llama.n_tokens} tokens) from {state} in {time.monotonic() - started:.2f}s"
    llama.create_chat_completion(messages=[*messages, {"role": "user", "content": PROBE}], max_tokens=1,
                                 temperature=0.0)
    _save(llama, state)
    return f"read the fixed prefix ({llama.n_tokens} tokens) in {time.monotonic() - started:.1f}s; saved to {state}"


def _load(llama: Any, state: Path) -> bool:
    import llama_cpp

    capacity = llama.n_ctx()
    tokens = (llama_cpp.llama_token * capacity)()
    count = ctypes.c_size_t(0)
    if not llama_cpp.llama_state_load_file(llama.ctx, os.fsencode(state), tokens, capacity, ctypes.byref(count)):
        llama.reset()
        llama._ctx.kv_cache_clear()
        state.unlink(missing_ok=True)  # another build's or a torn file: computed again below
        return False
    n = count.value
    llama.input_ids[:n] = tokens[:n]
    llama.n_tokens = n
    llama._requires_eval = True  # the logits are the restored ones: the first request decodes its suffix
    return True


def _save(llama: Any, state: Path) -> None:
    import llama_cpp

    n = llama.n_tokens
    tokens = (llama_cpp.llama_token * n)(*llama.input_ids[:n].tolist())
    state.parent.mkdir(parents=True, exist_ok=True)
    partial = state.with_name(f"{state.name}.{os.getpid()}.partial")
    if llama_cpp.llama_state_save_file(llama.ctx, os.fsencode(partial), tokens, n):
        os.replace(partial, state)
    else:
        partial.unlink(missing_ok=True)
        print(f"local_server: could not save the prefix state to {state}; it is read again next start",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from llama_cpp.server import app as server_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--prefix-state", type=Path)
    ours.add_argument("--prefix-messages", type=Path)
    known, rest = ours.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog="rlm_host.rlm.local_server")
    add_args_from_model(parser, Settings)
    args = parser.parse_args(rest)
    # typed as returning the class it is given; it returns an instance of it
    server_settings = cast(ServerSettings, parse_model_from_args(ServerSettings, args))
    model_settings = cast(ModelSettings, parse_model_from_args(ModelSettings, args))
    app = server_app.create_app(server_settings=server_settings, model_settings=[model_settings])
    if known.prefix_state is not None and known.prefix_messages is not None:
        proxy = server_app._llama_proxy
        assert proxy is not None, "create_app sets the model proxy"
        messages = json.loads(known.prefix_messages.read_text(encoding="utf-8"))
        print(f"local_server: {warm(proxy(model_settings.model_alias), messages, known.prefix_state)}",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=server_settings.host, port=server_settings.port)


if __name__ == "__main__":
    main()
