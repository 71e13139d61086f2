"""Sign-in with an API key, remembered in the browser; sign-out.

The key is checked here (through the workbench facade) and then kept in two places:
- `gr.State` (server-side, per tab): the `Session` every callback trusts for the owner;
- `gr.BrowserState` (the browser's localStorage, encrypted with a per-installation secret):
  so a reload, or a server restart, signs the person straight back in and reopens the last
  conversation. Signing out forgets it. A revoked key fails the check on the next load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from ui.gauge import Gauge

if TYPE_CHECKING:  # ui.views composes the areas; an area only takes the page it is given
    from ui.views import Page


@dataclass(frozen=True)
class Session:
    """The signed-in person: their key (for /v1) and its name (the owner of their data)."""

    owner: str
    key: str
    admin: bool = False


@dataclass(frozen=True)
class SignIn:
    """The sign-in panel, shown instead of the workbench until a key is accepted."""

    panel: gr.Column
    key_box: gr.Textbox
    button: gr.Button
    message: gr.Markdown


def build() -> SignIn:
    """Create the sign-in panel."""
    # Hidden until the page's load event has tried the remembered key: no sign-in flash.
    with gr.Column(elem_id="signin-panel", visible=False) as panel:
        gr.Markdown("## Qwen Workbench\nSign in with your API key (the same key as for `/v1`).")
        key_box = gr.Textbox(
            label="API key",
            type="password",
            placeholder="wb-…",
            elem_id="signin-key",
            max_lines=1,
        )
        button = gr.Button("Sign in", variant="primary", elem_id="signin-button")
        message = gr.Markdown("", elem_id="signin-message")
    return SignIn(panel, key_box, button, message)


def _field(stored, name: str):
    """A field of a value read back from the browser (which may hold anything)."""
    return stored.get(name) if isinstance(stored, dict) else None


def wire(signin: SignIn, page: Page, workbench: gr.Column, demo: gr.Blocks, gauge: Gauge) -> None:
    """Attach the sign-in, restore-on-load and sign-out events (`workbench`: the column
    shown once signed in)."""
    wb, state, sidebar, documents = page.wb, page.state, page.sidebar, page.documents
    outputs = page.outputs | {
        state.session,
        state.saved_key,
        signin.panel,
        workbench,
        sidebar.panel,
        signin.message,
        signin.key_box,
        sidebar.whoami,
        documents.status,
        documents.progress,
    }

    def signed_in(session: Session, cid: int | None) -> dict:
        return {
            state.session: session,
            state.saved_key: {"key": session.key},
            signin.panel: gr.Column(visible=False),
            workbench: gr.Column(visible=True),
            sidebar.panel: gr.Sidebar(visible=True),
            signin.message: "",
            signin.key_box: "",
            sidebar.whoami: f"Signed in as **{session.owner}**",
            **page.conversation_view(session.owner, cid),
            **page.idle_controls(),
        }

    def signed_out(message: str = "") -> dict:
        return {
            state.session: None,
            # Wrapped in dicts: the browser skips storing falsy values, which would keep the key.
            state.saved_key: {"key": ""},
            state.saved_conv: {"id": None},
            state.conv_id: None,
            signin.panel: gr.Column(visible=True),
            workbench: gr.Column(visible=False),
            sidebar.panel: gr.Sidebar(visible=False),
            signin.message: message,
            page.chat.chatbot: [],
            sidebar.conv_list: gr.Radio(choices=[], value=None),
            sidebar.conv_more: "",
            # The next person to sign in on this page must not see this one's documents.
            documents.attached: gr.CheckboxGroup(choices=[], value=[]),
            documents.status: "",
            documents.progress: "",
        }

    def sign_in(secret: str):
        identity = wb.sign_in(secret)
        if identity is None:
            return signed_out("That key was not accepted: check it, or ask for a new one.")
        session = Session(owner=identity.owner, key=secret.strip(), admin=identity.admin)
        # The newest conversation opens first, as the list shows it.
        newest = wb.list_conversations(session.owner, limit=1)
        return signed_in(session, newest[0]["id"] if newest else None)

    def restore(saved_key: dict | None, saved_conv: dict | None):
        secret = _field(saved_key, "key")
        if not isinstance(secret, str) or not secret:
            return signed_out()
        identity = wb.sign_in(secret)
        if identity is None:
            return signed_out("Your saved key is no longer valid: sign in again.")
        session = Session(owner=identity.owner, key=secret, admin=identity.admin)
        saved_conv = _field(saved_conv, "id")
        if not isinstance(saved_conv, int):
            newest = wb.list_conversations(session.owner, limit=1)
            saved_conv = newest[0]["id"] if newest else None
        return signed_in(session, saved_conv)

    common = dict(outputs=outputs, api_visibility="private", show_progress="hidden")
    signed = gr.on(
        [signin.button.click, signin.key_box.submit], sign_in, inputs=[signin.key_box], **common
    )
    restored = demo.load(restore, inputs=[state.saved_key, state.saved_conv], **common)
    sidebar.signout_btn.click(lambda: signed_out(), **common)
    for event in (signed, restored):
        gauge.chain(event)
