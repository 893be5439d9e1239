"""API descriptions generated from the registry: OpenAPI 3.1 for HTTP, OpenRPC for JSON-RPC."""

from __future__ import annotations

from typing import Any

from moontwist import API_VERSION, __version__
from moontwist.api.args import json_schema
from moontwist.api.registry import RPC_TRANSPORTS, Endpoint, Registry

__all__ = ["openapi_document", "openrpc_document"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
}


def _operation(endpoint: Endpoint, verb: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{endpoint.method}" if len(endpoint.http_methods) == 1 else f"{endpoint.method}.{verb.lower()}",
        "summary": endpoint.description or endpoint.method,
        "x-jsonrpc-method": endpoint.method,
        "responses": {
            "200": {
                "description": "Success",
                "content": {"application/json": {"schema": {"type": "object", "properties": {"result": {}}}}},
            },
            "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if not endpoint.auth:
        op["security"] = []
    if verb in ("GET", "DELETE") or endpoint.raw_body:
        op["parameters"] = [
            {
                "name": arg.name,
                "in": "query",
                "required": arg.required,
                "description": arg.description,
                "schema": arg.schema(),
            }
            for arg in endpoint.args
        ]
    elif endpoint.args:
        op["requestBody"] = {
            "required": any(a.required for a in endpoint.args),
            "content": {"application/json": {"schema": json_schema(endpoint.args)}},
        }
    return op


def openapi_document(registry: Registry) -> dict[str, Any]:
    """Every HTTP route in the registry as an OpenAPI 3.1 document (shared: read-only)."""
    return registry.derived("openapi", lambda: _openapi(registry))


def openrpc_document(registry: Registry) -> dict[str, Any]:
    """Every JSON-RPC method with the same argument schemas, as OpenRPC (shared: read-only)."""
    return registry.derived("openrpc", lambda: _openrpc(registry))


def _openapi(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in sorted(registry, key=lambda e: e.http_path or ""):
        if not endpoint.http_path or "http" not in endpoint.transports:
            continue
        path = endpoint.http_path
        item = paths.setdefault(path[:-1] + "{path}" if path.endswith("/*") else path, {})
        if path.endswith("/*"):
            item["parameters"] = [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}]
        for verb in endpoint.http_methods:
            item[verb.lower()] = _operation(endpoint, verb)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "moontwist (Moonraker-compatible API)",
            "version": ".".join(map(str, API_VERSION)),
            "x-server-version": __version__,
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            }
        },
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths,
    }


def _openrpc(registry: Registry) -> dict[str, Any]:
    methods = []
    for endpoint in sorted(registry, key=lambda e: e.method):
        if not endpoint.transports & RPC_TRANSPORTS:
            continue
        methods.append(
            {
                "name": endpoint.method,
                "summary": endpoint.description,
                "paramStructure": "by-name",
                "params": [
                    {"name": a.name, "required": a.required, "description": a.description, "schema": a.schema()}
                    for a in endpoint.args
                ],
                "result": {"name": "result", "schema": {}},
                "x-transports": sorted(endpoint.transports & RPC_TRANSPORTS),
            }
        )
    return {
        "openrpc": "1.3.2",
        "info": {"title": "moontwist JSON-RPC API", "version": ".".join(map(str, API_VERSION))},
        "methods": methods,
    }
