"""The context gauge: exact prompt tokens of what Send would send, against the enforced maximum.

Counted with the served model's tokenizer and chat template (services.counter) over the
system prompt, the history and the draft, so it is right before the request is made.
"""

from __future__ import annotations

from functools import partial

import anyio
import gradio as gr

from server.workbench import Workbench
from ui import formatting
from ui.layout import Components


def _inputs(c: Components) -> list:
    return [c.session, c.conv_id, c.draft, c.system_prompt, c.max_tokens]


def make_refresh(wb: Workbench):
    """The gauge callback (async: counting a long history runs in a worker thread)."""

    async def refresh(session, cid, draft, system_prompt, max_tokens):
        if session is None:
            return gr.skip()
        prompt = await anyio.to_thread.run_sync(partial(
            wb.prompt, session.owner, cid, system_prompt=system_prompt or "", draft=draft))
        used = await wb.count_prompt(prompt)
        return formatting.gauge_html(used, wb.max_context, reserve=int(max_tokens or 0))

    return refresh


def chain(event, c: Components, wb: Workbench):
    """Refresh the gauge after `event` (anything that changed the conversation shown)."""
    return event.then(
        make_refresh(wb), inputs=_inputs(c), outputs=[c.gauge],
        show_progress="hidden", api_visibility="private",
    )


def wire(c: Components, wb: Workbench) -> None:
    """Recount as the draft, the system prompt or max tokens change."""
    gr.on(
        [c.draft.change, c.system_prompt.change, c.max_tokens.change],
        make_refresh(wb), inputs=_inputs(c), outputs=[c.gauge],
        trigger_mode="always_last", show_progress="hidden", api_visibility="private",
        concurrency_limit=None,
    )
