"""The context gauge: exact prompt tokens of what Send would send, against the enforced maximum.

Counted with the served model's tokenizer and chat template (services.counter) over the
attached documents, the system prompt, the history and the draft, so it is right before the
request is made. The documents tab's fit summary (and its "Analyse in chunks" button) is
redrawn with it, from the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import anyio
import gradio as gr

from server.workbench import Workbench
from ui import formatting


def build_gauge() -> gr.HTML:
    """The gauge under the chat."""
    return gr.HTML(formatting.gauge_html(None, 0), elem_id="context-gauge")


@dataclass(frozen=True)
class Gauge:
    """The gauge's redraw: what it reads and the three components it draws."""

    wb: Workbench
    # session, conv_id, draft, system prompt, max tokens
    inputs: list
    # the gauge, the documents tab's fit summary, its "Analyse in chunks" button
    outputs: list

    async def refresh(self, session, cid, draft, system_prompt, max_tokens):
        """The gauge callback (async: counting long documents runs in a worker thread)."""
        if session is None:
            return gr.skip(), gr.skip(), gr.skip()
        wb, owner = self.wb, session.owner
        attached = await anyio.to_thread.run_sync(wb.documents.attached, owner, cid)
        fit = await anyio.to_thread.run_sync(
            partial(
                wb.fit,
                owner,
                cid,
                system_prompt=system_prompt or "",
                draft=draft,
                max_tokens=int(max_tokens or 0),
            )
        )
        note = f"documents {fit.documents:,}" if attached else ""
        return (
            formatting.gauge_html(fit.used, fit.max_context, reserve=fit.reserve, note=note),
            formatting.fit_html(fit, attached),
            gr.Button(visible=bool(attached) and not fit.fits),
        )

    def chain(self, event):
        """Refresh the gauge after `event` (anything that changed the conversation shown)."""
        return event.then(
            self.refresh,
            inputs=self.inputs,
            outputs=self.outputs,
            show_progress="hidden",
            api_visibility="private",
        )

    def wire(self, triggers: list) -> None:
        """Recount as the draft, the system prompt or max tokens change (`triggers`)."""
        gr.on(
            triggers,
            self.refresh,
            inputs=self.inputs,
            outputs=self.outputs,
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="private",
            concurrency_limit=None,
        )
