"""PDF → pages of text → token counts → prompt assembly for whole-document analysis.

`extract` reads pages (`PdfText`, `extract_pages`, `page_count`), `ingest` stores them
(`ingest_pdf`), `prompt` builds the page-marked documents block and chunk plans, and
`file_part` reads OpenAI `file` content parts. Every unreadable file raises a subclass of
`errors.DocumentError` whose message is meant for the person who sent it.
"""
