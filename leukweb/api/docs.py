"""The API's documentation page, rendered on the server from the OpenAPI schema.

drf-spectacular's Swagger and Redoc views load their JavaScript from a CDN,
which a hospital network or an offline install cannot reach; this page needs
nothing but the schema itself, so it always works and never drifts from it.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


def _type_of(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "allOf" in schema:
        return " & ".join(_type_of(part) for part in schema["allOf"])
    if "oneOf" in schema:
        return " | ".join(_type_of(part) for part in schema["oneOf"])
    if schema.get("type") == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    kind = schema.get("type", "object")
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    if "enum" in schema:
        kind = f"{kind}: {', '.join(str(v) for v in schema['enum'] if v not in ('', None))}"
    return kind + (" or null" if schema.get("nullable") else "")


def _body(content: dict) -> list[dict]:
    return [
        {"media_type": media_type, "type": _type_of(spec.get("schema", {}))}
        for media_type, spec in content.items()
    ]


def _operations(schema: dict) -> list[dict]:
    operations = []
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            operations.append(
                {
                    "method": method,
                    "path": path,
                    "summary": op.get("summary") or op.get("operationId"),
                    "description": op.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": _type_of(p.get("schema", {})),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "request": _body(op.get("requestBody", {}).get("content", {})),
                    "responses": [
                        {
                            "code": code,
                            "description": response.get("description", ""),
                            "body": _body(response.get("content", {})),
                        }
                        for code, response in op.get("responses", {}).items()
                    ],
                }
            )
    return operations


def _components(schema: dict) -> list[dict]:
    components = []
    for name, spec in schema.get("components", {}).get("schemas", {}).items():
        required = set(spec.get("required", []))
        components.append(
            {
                "name": name,
                "description": spec.get("description", ""),
                "type": "" if "properties" in spec else _type_of(spec),
                "properties": [
                    {
                        "name": prop,
                        "type": _type_of(detail),
                        "required": prop in required,
                        "read_only": detail.get("readOnly", False),
                        "description": detail.get("description", ""),
                    }
                    for prop, detail in spec.get("properties", {}).items()
                ],
            }
        )
    return components


# The documentation holds no patient data, and a new API user reads it before having a
# token (it says how to get one).
@login_not_required
@require_safe
def api_docs(request: HttpRequest) -> HttpResponse:
    # The same document as /api/schema/, which does not depend on who asks.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return render(
        request,
        "api_docs.html",
        {
            "info": schema["info"],
            "operations": _operations(schema),
            "components": _components(schema),
            "security": sorted(schema.get("components", {}).get("securitySchemes", {})),
        },
    )
