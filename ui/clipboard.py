"""What the Chatbot's copy buttons put on the clipboard.

An answer is shown with its stats line (and, if it ended early, why) rendered from HTML after
its text, and Gradio's copy buttons copy a message's content as is. This script, run once per
page, takes those blocks (each appended as "\n\n<div class=...>...</div>" by `ui.formatting`)
out of whatever the buttons copy, so "Copy message" gives the answer and "Copy conversation"
the conversation.

Gradio's buttons write through the Clipboard API, which browsers only offer on secure origins
(https, localhost). A workbench reached over plain http from another machine has none: there
the script provides `navigator.clipboard.writeText` itself, by copying a selected textarea
(which a click allows), so both buttons work there too.
"""

from ui.formatting import NOTE_CLASSES

COPY_JS = """
if (!window.workbenchCopyClean) {
  window.workbenchCopyClean = true;
  const notes = new RegExp('\\\\n\\\\n<div class="(?:NOTE_CLASSES)">[\\\\s\\\\S]*?</div>', "g");
  const clean = (text) => (typeof text === "string" ? text.replace(notes, "") : text);
  if (!navigator.clipboard) {
    const copyText = (text) => {
      const box = document.createElement("textarea");
      box.value = text;
      box.setAttribute("readonly", "");
      box.style.position = "fixed";
      box.style.opacity = "0";
      document.body.appendChild(box);
      box.select();
      try {
        return document.execCommand("copy")
          ? Promise.resolve() : Promise.reject(new Error("copy refused"));
      } finally {
        box.remove();
      }
    };
    Object.defineProperty(navigator, "clipboard", {
      value: { writeText: copyText }, configurable: true });
  }
  const clip = navigator.clipboard;
  const write = clip.writeText.bind(clip);
  clip.writeText = (text) => write(clean(text));
}
""".replace("NOTE_CLASSES", "|".join(NOTE_CLASSES))
