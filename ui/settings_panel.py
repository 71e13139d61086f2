"""The settings panel: system prompt and sampling parameters, remembered per conversation.

A change the person makes is stored at once on the open conversation; a new conversation
takes the panel's values when its first message is sent. Only user input (`.input`) saves,
so showing another conversation's settings never writes anything back.
"""

from __future__ import annotations

import gradio as gr

from server.sampling import DEFAULT_PARAMS, normalize_params
from server.workbench import Workbench
from ui import views
from ui.layout import Components


def read_settings(system_prompt, temperature, top_p, max_tokens, presence, frequency, stop_text):
    """(system prompt, params) from the panel's values, completed and clamped."""
    stop = [line for line in (stop_text or "").splitlines() if line]
    params = normalize_params({
        "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
        "presence_penalty": presence, "frequency_penalty": frequency, "stop": stop,
    })
    return system_prompt or "", params


def wire(c: Components, wb: Workbench) -> None:
    """Save on every edit; reset to the documented defaults."""

    def save(session, cid, *settings):
        if session is None or cid is None:
            return
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)

    gr.on(
        [field.input for field in c.settings], save, inputs=[c.session, c.conv_id, *c.settings],
        trigger_mode="always_last", show_progress="hidden", api_visibility="private",
    )

    def reset(session, cid):
        params = dict(DEFAULT_PARAMS)
        if session is not None and cid is not None:
            wb.save_settings(session.owner, cid, system_prompt="", params=params)
        return views.settings_values(c, "", params)

    c.reset_btn.click(reset, inputs=[c.session, c.conv_id], outputs=c.settings,
                      api_visibility="private", show_progress="hidden")
