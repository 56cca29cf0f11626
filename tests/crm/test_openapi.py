import re

from openapi_spec_validator import validate


def test_openapi_document_is_valid_and_describes_the_api(client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    spec = r.json
    validate(spec)
    for path in ("/api/v1/stores", "/api/v1/stores/{code}", "/api/v1/api-keys",
                 "/api/v1/api-keys/{key_id}", "/api/v1/customers",
                 "/api/v1/customers/{customer_id}"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))]
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 1000, url
