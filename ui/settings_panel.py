"""The settings panel: system prompt and sampling parameters, remembered per conversation.

A change the person makes is stored at once on the open conversation; a new conversation
takes the panel's values when its first message is sent. Only user input (`.input`) saves,
so showing another conversation's settings never writes anything back.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from server.sampling import DEFAULT_PARAMS, MIN_TOP_P, normalize_params
from server.workbench import Workbench


def read_settings(system_prompt, temperature, top_p, max_tokens, presence, frequency, stop_text):
    """(system prompt, params) from the panel's values, completed and clamped."""
    stop = [line for line in (stop_text or "").splitlines() if line]
    params = normalize_params(
        {
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "presence_penalty": presence,
            "frequency_penalty": frequency,
            "stop": stop,
        }
    )
    return system_prompt or "", params


@dataclass(frozen=True)
class SettingsPanel:
    """The settings tab's fields, in the order `read_settings` takes them, and Reset."""

    system_prompt: gr.Textbox
    temperature: gr.Slider
    top_p: gr.Slider
    max_tokens: gr.Number
    presence: gr.Slider
    frequency: gr.Slider
    stop_seqs: gr.Textbox
    reset_btn: gr.Button

    @property
    def fields(self) -> list:
        """The inputs, in the order read_settings reads them."""
        return [
            self.system_prompt,
            self.temperature,
            self.top_p,
            self.max_tokens,
            self.presence,
            self.frequency,
            self.stop_seqs,
        ]

    def show(self, system_prompt: str, params: dict) -> dict:
        """The fields filled with a conversation's (or the default) settings."""
        values = (
            system_prompt,
            params["temperature"],
            params["top_p"],
            params["max_tokens"],
            params["presence_penalty"],
            params["frequency_penalty"],
            "\n".join(params["stop"]),
        )
        return dict(zip(self.fields, values, strict=True))


def build() -> SettingsPanel:
    """Create the fields (inside the settings tab)."""
    d = DEFAULT_PARAMS
    system_prompt = gr.Textbox(
        label="System prompt",
        lines=4,
        max_lines=12,
        elem_id="system-prompt",
        placeholder="Optional instructions for the model",
    )
    temperature = gr.Slider(
        0, 2, value=d["temperature"], step=0.05, label="Temperature", elem_id="temperature"
    )
    top_p = gr.Slider(MIN_TOP_P, 1, value=d["top_p"], step=0.01, label="Top p", elem_id="top-p")
    # No fixed maximum: the context limit is the engine's, known once the app runs.
    max_tokens = gr.Number(
        value=d["max_tokens"], precision=0, minimum=1, label="Max tokens", elem_id="max-tokens"
    )
    presence = gr.Slider(
        -2,
        2,
        value=d["presence_penalty"],
        step=0.1,
        label="Presence penalty",
        elem_id="presence-penalty",
    )
    frequency = gr.Slider(
        -2,
        2,
        value=d["frequency_penalty"],
        step=0.1,
        label="Frequency penalty",
        elem_id="frequency-penalty",
    )
    stop_seqs = gr.Textbox(
        label="Stop sequences (one per line, up to 4)", lines=2, elem_id="stop-sequences"
    )
    reset_btn = gr.Button("Reset to defaults", size="sm", elem_id="settings-reset")
    return SettingsPanel(
        system_prompt, temperature, top_p, max_tokens, presence, frequency, stop_seqs, reset_btn
    )


def wire(panel: SettingsPanel, wb: Workbench, session: gr.State, conv_id: gr.State) -> None:
    """Save on every edit; reset to the documented defaults."""

    def save(session, cid, *settings):
        if session is None or cid is None:
            return
        system_prompt, params = read_settings(*settings)
        wb.save_settings(session.owner, cid, system_prompt=system_prompt, params=params)

    gr.on(
        [field.input for field in panel.fields],
        save,
        inputs=[session, conv_id, *panel.fields],
        trigger_mode="always_last",
        show_progress="hidden",
        api_visibility="private",
    )

    def reset(session, cid):
        params = dict(DEFAULT_PARAMS)
        if session is not None and cid is not None:
            wb.save_settings(session.owner, cid, system_prompt="", params=params)
        return panel.show("", params)

    panel.reset_btn.click(
        reset,
        inputs=[session, conv_id],
        outputs=panel.fields,
        api_visibility="private",
        show_progress="hidden",
    )
