"""Actions on the open conversation: rename, and delete after a confirmation.

(Exports are download buttons whose files `ui.views` refreshes with every redraw.)
"""

from __future__ import annotations

import gradio as gr

from server.workbench import Workbench
from ui import gauge, views
from ui.layout import Components


def wire(c: Components, wb: Workbench) -> None:
    """Attach rename and the two-step delete."""
    outputs = views.view_outputs(c)

    def rename(session, cid, busy, query, title):
        if session is None or cid is None:
            return {}
        try:
            wb.rename(session.owner, cid, title)
        except ValueError as exc:
            gr.Warning(str(exc).capitalize())
        if busy:
            # Keep the streaming chat as it is: only the list and the title change.
            return {**views.sidebar_list(c, wb, session.owner, query, cid), c.title_box: title}
        return views.conversation_view(c, wb, session.owner, cid, query)

    def ask_delete(session, cid, title):
        if session is None or cid is None:
            return {}
        name = title or "this conversation"
        return {
            c.confirm_row: gr.Row(visible=True),
            c.confirm_msg: f"Delete **{name}** and all its messages? This cannot be undone.",
        }

    def delete(session, cid, busy, query):
        if session is None or cid is None:
            return {c.confirm_row: gr.Row(visible=False)}
        if busy:
            gr.Warning("An answer is streaming: stop it before deleting the conversation.")
            return {c.confirm_row: gr.Row(visible=False)}
        wb.delete(session.owner, cid)
        views.forget_exports(session.owner, cid)
        newest = wb.list_conversations(session.owner, limit=1)
        return views.conversation_view(c, wb, session.owner, newest[0]["id"] if newest else None, query)

    common = dict(api_visibility="private", show_progress="hidden")
    context = [c.session, c.conv_id, c.busy, c.search_box]
    gr.on([c.rename_btn.click, c.title_box.submit], rename, inputs=context + [c.title_box],
          outputs=outputs, **common)
    c.delete_btn.click(ask_delete, inputs=[c.session, c.conv_id, c.title_box],
                       outputs={c.confirm_row, c.confirm_msg}, **common)
    c.cancel_btn.click(lambda: gr.Row(visible=False), outputs=c.confirm_row, **common)
    deleted = c.confirm_btn.click(delete, inputs=context, outputs=outputs, **common)
    gauge.chain(deleted, c, wb)
