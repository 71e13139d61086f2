"""Sign-in with an API key, remembered in the browser; sign-out.

The key is checked here (through the workbench facade) and then kept in two places:
- `gr.State` (server-side, per tab): the `Session` every callback trusts for the owner;
- `gr.BrowserState` (the browser's localStorage, encrypted with a per-installation secret):
  so a reload, or a server restart, signs the person straight back in and reopens the last
  conversation. Signing out forgets it. A revoked key fails the check on the next load.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from server.workbench import Workbench
from ui import gauge, views
from ui.layout import Components


@dataclass(frozen=True)
class Session:
    """The signed-in person: their key (for /v1) and its name (the owner of their data)."""

    owner: str
    key: str
    admin: bool = False


def _field(stored, name: str):
    """A field of a value read back from the browser (which may hold anything)."""
    return stored.get(name) if isinstance(stored, dict) else None


def _signed_in(c: Components, wb: Workbench, session: Session, cid: int | None) -> dict:
    return {
        c.session: session,
        c.saved_key: {"key": session.key},
        c.signin_panel: gr.Column(visible=False),
        c.workbench: gr.Column(visible=True),
        c.sidebar: gr.Sidebar(visible=True),
        c.signin_msg: "",
        c.key_box: "",
        c.whoami: f"Signed in as **{session.owner}**",
        **views.conversation_view(c, wb, session.owner, cid),
        **views.idle_controls(c),
    }


def _signed_out(c: Components, message: str = "") -> dict:
    return {
        c.session: None,
        # Wrapped in dicts: the browser skips storing falsy values, which would keep the key.
        c.saved_key: {"key": ""},
        c.saved_conv: {"id": None},
        c.conv_id: None,
        c.signin_panel: gr.Column(visible=True),
        c.workbench: gr.Column(visible=False),
        c.sidebar: gr.Sidebar(visible=False),
        c.signin_msg: message,
        c.chatbot: [],
        c.conv_list: gr.Radio(choices=[], value=None),
        c.conv_more: "",
        # The next person to sign in on this page must not see this one's documents.
        c.doc_attached: gr.CheckboxGroup(choices=[], value=[]),
        c.doc_status: "",
        c.doc_progress: "",
    }


def wire(c: Components, wb: Workbench, demo: gr.Blocks) -> None:
    """Attach the sign-in, restore-on-load and sign-out events."""
    outputs = views.view_outputs(c) | {
        c.session, c.saved_key, c.signin_panel, c.workbench, c.sidebar, c.signin_msg,
        c.key_box, c.whoami, c.doc_status, c.doc_progress,
    }

    def sign_in(secret: str):
        identity = wb.sign_in(secret)
        if identity is None:
            return _signed_out(c, "That key was not accepted: check it, or ask for a new one.")
        session = Session(owner=identity.owner, key=secret.strip(), admin=identity.admin)
        # The newest conversation opens first, as the list shows it.
        newest = wb.list_conversations(session.owner, limit=1)
        return _signed_in(c, wb, session, newest[0]["id"] if newest else None)

    def restore(saved_key: dict | None, saved_conv: dict | None):
        secret = _field(saved_key, "key")
        if not isinstance(secret, str) or not secret:
            return _signed_out(c)
        identity = wb.sign_in(secret)
        if identity is None:
            return _signed_out(c, "Your saved key is no longer valid: sign in again.")
        session = Session(owner=identity.owner, key=secret, admin=identity.admin)
        saved_conv = _field(saved_conv, "id")
        if not isinstance(saved_conv, int):
            newest = wb.list_conversations(session.owner, limit=1)
            saved_conv = newest[0]["id"] if newest else None
        return _signed_in(c, wb, session, saved_conv)

    common = dict(outputs=outputs, api_visibility="private", show_progress="hidden")
    signed_in = gr.on([c.signin_btn.click, c.key_box.submit], sign_in, inputs=[c.key_box], **common)
    restored = demo.load(restore, inputs=[c.saved_key, c.saved_conv], **common)
    c.signout_btn.click(lambda: _signed_out(c), **common)
    for event in (signed_in, restored):
        gauge.chain(event, c, wb)
