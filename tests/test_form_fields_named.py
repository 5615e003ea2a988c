"""Every form field of the product's own pages has a label, and every field that points a screen reader at its
help text (Django's aria-describedby="<id>_helptext") finds it on the page: the asset page's "What failed"
field pointed at help text ("e.g. bearing wear") that was never rendered, and the compare page's "mode"
select had no label at all. A label's for= names an element of the page (the edge page's asset checkboxes
had <label for="">)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from models_registry.services import promote
from tests.models_registry.conftest import make_version


class Fields(HTMLParser):
    """The page's form fields, labels' targets and element ids."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.fields: list[dict[str, str]] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if "id" in named:
            self.ids.add(named["id"])
        if tag == "label":
            self._in_label += 1
            if "for" in named:
                self.label_for.add(named["for"])
        elif tag in ("input", "select", "textarea") and named.get("type") not in (
            "hidden",
            "submit",
            "button",
        ):
            self.fields.append(named | {"wrapped": "yes" if self._in_label else ""})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


def problems(html: str) -> list[str]:
    page = Fields()
    page.feed(html)
    found = []
    for field in page.fields:
        name = field.get("name", "?")
        if not (field["wrapped"] or field.get("id") in page.label_for or field.get("aria-label")):
            found.append(f"{name}: no label")
        for target in field.get("aria-describedby", "").split():
            if target not in page.ids:
                found.append(f"{name}: aria-describedby {target} is not on the page")
    # The edge page's checkbox group had <label for="">Assets</label>: a label that names no field.
    found += [
        f'<label for="{target}"> points at no element' for target in page.label_for if target not in page.ids
    ]
    return found


@pytest.mark.parametrize("role", ["technician", "engineer"])
def test_the_asset_pages_forms_show_their_help_text(client, request, asset, role):
    client.force_login(request.getfixturevalue(role))
    html = client.get(asset.get_absolute_url()).content.decode()

    assert 'id="id_missed-fault_type_helptext">e.g. bearing wear<' in html
    assert (
        "e.g. 2026-01-05 08:00, the site&#x27;s time<" in html
    )  # the chart range's From: which format, which clock
    assert problems(html) == []


@pytest.mark.parametrize("page", ["/models/", "/models/edge/", "compare"])
def test_the_engineers_model_pages_name_every_field(client, engineer, asset, page):
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    client.force_login(engineer)
    url = f"/models/{champion.pk}/compare/" if page == "compare" else page

    response = client.get(url)

    assert response.status_code == 200
    assert problems(response.content.decode()) == []
