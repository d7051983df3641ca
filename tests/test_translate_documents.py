"""Anthropic document blocks as text, and claude-* names moving to a model that has what a request uses."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kyma.errors import InvalidRequest
from kyma.services.catalog import Catalog
from kyma.translate.anthropic import anthropic_to_openai_request, capable_model
from kyma.translate.documents import MAX_PDF_PAGES, document_text
from tests.pdfs import pdf_with_pages

CATALOG = Catalog.load(Path(__file__).resolve().parent.parent / "kyma" / "data" / "catalog.json")


def pdf_block(data: bytes, **extra) -> dict:
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": base64.b64encode(data).decode()}, **extra}


def test_a_pdf_becomes_its_pages_text_in_order():
    text = document_text(pdf_block(pdf_with_pages("Invoice 42", "Total: 17 EUR"), title="invoice.pdf"), "m")
    assert text == "invoice.pdf\n\n[page 1]\nInvoice 42\n\n[page 2]\nTotal: 17 EUR"


@pytest.mark.parametrize("source, expected", [
    ({"type": "text", "media_type": "text/plain", "data": "plain words"}, "plain words"),
    ({"type": "content", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "a\n\nb"),
    ({"type": "base64", "media_type": "text/plain", "data": base64.b64encode("héllo".encode()).decode()}, "héllo"),
])
def test_text_sources(source, expected):
    assert document_text({"type": "document", "source": source}, "m") == expected


@pytest.mark.parametrize("source, code, param", [
    ({"type": "url", "url": "http://169.254.169.254/doc.pdf"}, "invalid_request", "m.source.type"),
    ({"type": "file", "file_id": "file_1"}, "invalid_request", "m.source.type"),
    ({"type": "base64", "media_type": "application/pdf", "data": "not base64!"}, "invalid_request", "m.source.data"),
    ({"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(b"%PDF-1.4 junk").decode()},
     "invalid_document", "m.source.data"),
    ({"type": "base64", "media_type": "image/tiff", "data": ""}, "invalid_request", "m.source.media_type"),
    ({"type": "content", "content": [{"type": "image"}]}, "invalid_request", "m.source.content.0"),
])
def test_what_cannot_be_read_is_a_clear_400(source, code, param):
    with pytest.raises(InvalidRequest) as err:
        document_text({"type": "document", "source": source}, "m")
    assert err.value.code == code and err.value.param == param


def test_a_pdf_over_the_page_limit_is_refused_before_reading_it():
    with pytest.raises(InvalidRequest) as err:
        document_text(pdf_block(pdf_with_pages(*["p"] * (MAX_PDF_PAGES + 1))), "m")
    assert err.value.code == "document_too_long" and str(MAX_PDF_PAGES + 1) in err.value.message


def test_an_encrypted_pdf_is_refused():
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_pages("secret"))))
    writer.encrypt("pw")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(InvalidRequest, match="encrypted"):
        document_text(pdf_block(out.getvalue()), "m")


def test_a_pdf_in_a_user_turn_reaches_the_upstream_as_text():
    body = {"model": "claude-opus-4-8", "max_tokens": 50, "messages": [{"role": "user", "content": [
        pdf_block(pdf_with_pages("The password is tangerine")), {"type": "text", "text": "What is the password?"}]}]}
    sent = anthropic_to_openai_request(body, model="qwen-3.6-plus")["messages"][-1]["content"]
    assert sent == "[page 1]\nThe password is tangerine\n\nWhat is the password?"


IMAGE = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}
TOOL = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_a_claude_name_keeps_its_model_when_it_can_serve():
    assert capable_model("qwen-3.6-plus", CATALOG, {"messages": [{"role": "user", "content": "hi"}]}) == "qwen-3.6-plus"
    assert capable_model("kimi-k2.5", CATALOG, {"messages": [IMAGE], "tools": TOOL}) == "kimi-k2.5"


@pytest.mark.parametrize("mapped", ["qwen-3.6-plus", "glm-4.7-flash", "deepseek-r1"])
def test_images_move_to_a_vision_model_of_the_same_cost_tier(mapped):
    chosen = CATALOG.get(capable_model(mapped, CATALOG, {"messages": [IMAGE]}))
    assert chosen.supports_vision and chosen.cost_tier == CATALOG.get(mapped).cost_tier


def test_tools_move_to_a_tool_model_of_the_same_family_first():
    chosen = CATALOG.get(capable_model("deepseek-r1", CATALOG, {"messages": [], "tools": TOOL}))
    assert chosen.supports_tools and chosen.family == "deepseek"
