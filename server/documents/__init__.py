"""PDF → pages of text → token counts → page-marked prompts: pure code, no storage.

`extract` reads pages (`PdfText`, `extract_pages`, `page_count`), `render` writes a document as
the model sees it, `prompt` builds the page-marked documents block and chunk plans, and
`file_part` reads OpenAI `file` content parts. Every unreadable file raises a subclass of
`errors.DocumentError` whose message is meant for the person who sent it. Storing documents
and asking the model about them act for an owner: `server.workbench` does that.
"""
