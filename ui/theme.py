"""The workbench's look: a few CSS rules on top of Gradio's default theme.

The CSS travels inside the Blocks (a `<style>` in the page head, set by an HTML component),
so it applies whatever `gr.mount_gradio_app` is given.
"""

CSS = """
#signin-panel { max-width: 460px; margin: 12vh auto 0 auto; }
#app-title h1, #app-title h2 { margin: 0; }
#conversation-header { align-items: center; }
#conversation-header button { min-width: 0; }
#chatbot .wb-stats {
  display: flex; flex-wrap: wrap; gap: 4px 12px; margin-top: 8px; padding-top: 6px;
  border-top: 1px solid var(--border-color-primary);
  font-size: 12px; color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums;
}
#chatbot .wb-error {
  margin-top: 8px; padding: 8px 10px; border-radius: 6px;
  background: var(--error-background-fill, #fef2f2); color: var(--error-text-color, #b91c1c);
  border: 1px solid var(--error-border-color, #fecaca); font-size: 14px;
}
.wb-gauge { margin: 2px 0 0 0; }
.wb-gauge-bar {
  height: 6px; border-radius: 3px; background: var(--border-color-primary); overflow: hidden;
}
.wb-gauge-fill { height: 100%; background: var(--color-accent); transition: width .2s; }
.wb-gauge-high .wb-gauge-fill { background: #d97706; }
.wb-gauge-over .wb-gauge-fill { background: #dc2626; }
.wb-gauge-label { font-size: 12px; color: var(--body-text-color-subdued); margin-top: 3px;
  font-variant-numeric: tabular-nums; }
.wb-gauge-over .wb-gauge-label { color: #dc2626; }
.wb-headroom ul { margin: 4px 0 0 18px; padding: 0; }
.wb-headroom { font-size: 13px; }
#conversation-list .wrap { flex-direction: column; gap: 2px; }
#conversation-list label {
  width: 100%; box-sizing: border-box; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; display: block; padding: 6px 8px; cursor: pointer;
}
#conversation-list label input { display: none; }
#conversation-list label.selected {
  background: var(--color-accent-soft); border-color: var(--color-accent); font-weight: 600;
}
#conversation-list label span { overflow: hidden; text-overflow: ellipsis; }
.wb-progress-label, .wb-fit { font-size: 13px; font-variant-numeric: tabular-nums; }
.wb-progress-label { margin-top: 3px; color: var(--body-text-color-subdued); }
.wb-doc { padding: 8px 10px; border: 1px solid var(--border-color-primary); border-radius: 6px; }
.wb-doc-name { font-weight: 600; overflow-wrap: anywhere; }
.wb-doc-facts { font-size: 13px; font-variant-numeric: tabular-nums; }
.wb-doc-note { font-size: 13px; color: var(--body-text-color-subdued); }
.wb-doc-warning { font-size: 13px; color: #b45309; margin-top: 4px; }
.wb-doc-error {
  padding: 8px 10px; border-radius: 6px; font-size: 14px;
  background: var(--error-background-fill, #fef2f2); color: var(--error-text-color, #b91c1c);
  border: 1px solid var(--error-border-color, #fecaca);
}
.wb-fit ul { margin: 0 0 4px 18px; padding: 0; }
.wb-fit-ok { color: var(--body-text-color-subdued); }
.wb-fit-over { color: #dc2626; }
#fit-offer { border: 1px solid #fca5a5; border-radius: 6px; padding: 6px 10px; }
#chatbot .wb-chunks { display: flex; align-items: center; gap: 8px; font-style: italic; }
#chatbot .wb-chunks progress { width: 120px; }
#whoami p { font-size: 13px; margin: 0; color: var(--body-text-color-subdued); }
"""


def head_html() -> str:
    """The `<style>` element to put in the document head."""
    return f'<style id="workbench-css">{CSS}</style>'
