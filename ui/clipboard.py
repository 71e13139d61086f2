"""What the Chatbot's copy buttons put on the clipboard.

An answer is shown with its stats line (and, if it ended early, why) rendered from HTML after
its text, and Gradio's copy buttons copy a message's content as is. This script, run once per
page, takes those blocks out of whatever the page copies, so "Copy message" gives the answer
and "Copy conversation" the conversation. It covers both ways Gradio copies: the Clipboard API
(secure origins: https, localhost) and a selected textarea with `execCommand("copy")` (plain
http on another host).
"""

from ui.formatting import NOTE_CLASSES

COPY_JS = """
if (!window.workbenchCopyClean) {
  window.workbenchCopyClean = true;
  const notes = new RegExp('\\\\n*<div class="(?:NOTE_CLASSES)">[\\\\s\\\\S]*?</div>', "g");
  const clean = (text) => (typeof text === "string" ? text.replace(notes, "") : text);
  const clip = navigator.clipboard;
  if (clip && clip.writeText) {
    const write = clip.writeText.bind(clip);
    clip.writeText = (text) => write(clean(text));
  }
  document.addEventListener("copy", (event) => {
    const box = document.activeElement instanceof HTMLTextAreaElement
      ? document.activeElement : document.body.firstElementChild;
    if (!(box instanceof HTMLTextAreaElement) || !event.clipboardData) return;
    const text = box.value.substring(box.selectionStart, box.selectionEnd);
    if (text !== clean(text)) {
      event.clipboardData.setData("text/plain", clean(text));
      event.preventDefault();
    }
  }, true);
}
""".replace("NOTE_CLASSES", "|".join(NOTE_CLASSES))
