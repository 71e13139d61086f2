"""The context gauge: exact prompt tokens of what Send would send, against the enforced maximum.

Counted with the served model's tokenizer and chat template (services.counter) over the
attached documents, the system prompt, the history and the draft, so it is right before the
request is made. The documents tab's fit summary (and its "Analyse in chunks" button) is
redrawn with it, from the same count.
"""

from __future__ import annotations

from functools import partial

import anyio
import gradio as gr

from server.workbench import Workbench
from ui import formatting
from ui.document_formatting import fit_html
from ui.layout import Components


def _inputs(c: Components) -> list:
    return [c.session, c.conv_id, c.draft, c.system_prompt, c.max_tokens]


def _outputs(c: Components) -> list:
    return [c.gauge, c.doc_fit, c.chunk_btn]


def make_refresh(wb: Workbench):
    """The gauge callback (async: counting long documents runs in a worker thread)."""

    async def refresh(session, cid, draft, system_prompt, max_tokens):
        if session is None:
            return gr.skip(), gr.skip(), gr.skip()
        owner = session.owner
        attached = await anyio.to_thread.run_sync(wb.documents.attached, owner, cid)
        fit = await anyio.to_thread.run_sync(partial(
            wb.fit, owner, cid, system_prompt=system_prompt or "", draft=draft,
            max_tokens=int(max_tokens or 0)))
        note = f"documents {fit.documents:,}" if attached else ""
        return (
            formatting.gauge_html(fit.used, fit.max_context, reserve=fit.reserve, note=note),
            fit_html(fit, attached),
            gr.Button(visible=bool(attached) and not fit.fits),
        )

    return refresh


def chain(event, c: Components, wb: Workbench):
    """Refresh the gauge after `event` (anything that changed the conversation shown)."""
    return event.then(
        make_refresh(wb), inputs=_inputs(c), outputs=_outputs(c),
        show_progress="hidden", api_visibility="private",
    )


def wire(c: Components, wb: Workbench) -> None:
    """Recount as the draft, the system prompt or max tokens change."""
    gr.on(
        [c.draft.change, c.system_prompt.change, c.max_tokens.change],
        make_refresh(wb), inputs=_inputs(c), outputs=_outputs(c),
        trigger_mode="always_last", show_progress="hidden", api_visibility="private",
        concurrency_limit=None,
    )
