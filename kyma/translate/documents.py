"""Anthropic `document` blocks as plain text, for upstream models that take no document input."""

from __future__ import annotations

import base64
import binascii
import io
import logging

from kyma.errors import InvalidRequest

# Anthropic's own page limit for one request's PDFs; also bounds the CPU one request can spend here.
MAX_PDF_PAGES = 100

# pypdf reports recoverable oddities of real-world PDFs as warnings; they are not ours to log.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def document_text(block: dict, param: str) -> str:
    """The text of a document block (plain text, text blocks or a base64 PDF), titled when it has a title."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest("A document block needs a 'source' object.", param=f"{param}.source")
    kind = source.get("type")
    if kind == "text":
        text = _text_field(source.get("data"), f"{param}.source.data")
    elif kind == "content":
        text = _content_text(source.get("content"), f"{param}.source.content")
    elif kind == "base64":
        text = _base64_text(source, f"{param}.source")
    elif kind in ("url", "file"):
        # Fetching a client's URL from the gateway would let a request reach the operator's network.
        raise InvalidRequest(f"Document source type '{kind}' is not supported here; send the document as "
                             "base64 or as text.", param=f"{param}.source.type")
    else:
        raise InvalidRequest("Document source type must be 'base64', 'text' or 'content'.",
                             param=f"{param}.source.type")
    title = block.get("title")
    return f"{title}\n\n{text}" if isinstance(title, str) and title else text


def _text_field(value, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param.rsplit('.', 1)[-1]}' must be a string.", param=param)
    return value


def _content_text(content, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("Document 'content' must be a string or a list of text blocks.", param=param)
    texts = []
    for i, item in enumerate(content):
        if not isinstance(item, dict) or item.get("type") != "text":
            raise InvalidRequest("Document content blocks must be text blocks.", param=f"{param}.{i}")
        texts.append(_text_field(item.get("text"), f"{param}.{i}.text"))
    return "\n\n".join(texts)


def _base64_text(source: dict, param: str) -> str:
    media_type = source.get("media_type")
    try:
        data = base64.b64decode(_text_field(source.get("data"), f"{param}.data"), validate=True)
    except binascii.Error:
        raise InvalidRequest("Document 'data' is not valid base64.", param=f"{param}.data") from None
    if media_type == "text/plain":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("A text/plain document must be UTF-8.", param=f"{param}.data") from None
    if media_type == "application/pdf":
        return pdf_text(data, f"{param}.data")
    raise InvalidRequest("Document 'media_type' must be application/pdf or text/plain.",
                         param=f"{param}.media_type")


def pdf_text(data: bytes, param: str) -> str:
    """Each page's text, in order, headed by its page number; a clear 400 for what cannot be read."""
    from pypdf import PdfReader  # imported on first use: most requests carry no PDF

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidRequest("The PDF is encrypted; send it without a password.", param=param)
        if len(reader.pages) > MAX_PDF_PAGES:
            raise InvalidRequest(f"The PDF has {len(reader.pages)} pages; at most {MAX_PDF_PAGES} are read per "
                                 "request.", param=param, code="document_too_long")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except InvalidRequest:
        raise
    except Exception:  # a damaged file can fail anywhere inside the parser: it is the client's input
        raise InvalidRequest("The PDF could not be read.", param=param, code="invalid_document") from None
    return "\n\n".join(f"[page {i}]\n{text}" for i, text in enumerate(pages, 1))
