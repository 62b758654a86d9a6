#!/usr/bin/env python3
"""Keeps docs/api/openapi.yaml true (docs/api.md says it describes the whole API).

routes:    every (method, path) the server registers is described, and every described one is
           served: the session service's route table (printed by api_routes_dump) plus the
           paths served outside it (STATIC below). Every schema is valid JSON Schema 2020-12.
responses: runs the given integration tests with RSGATE_API_LOG set (gateway_fixture.hpp then
           logs every answer curl received), and validates each answer against the operation it
           belongs to: its status must be described, and a JSON body must match that status's
           schema. Every operation with a JSON answer must have been exercised at least once,
           unless listed in UNEXERCISED with the reason.

Exit status 0 when all holds; otherwise every finding is printed and the status is 1.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse

import jsonschema
import yaml

# Served by the HTTPS layer and routes.cpp, not by the session service's route table.
STATIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/console/{file}"),
    ("GET", "/api/v1/channels/stream"),
}

# Operations the flow tests do not call through curl, and why; each is tested elsewhere.
UNEXERCISED = {
    ("GET", "/api/v1/channels/stream"): "a WebSocket: rsgate connect and ws_client.py use it, not curl",
    ("GET", "/api/v1/events"): "a server-sent-events stream: events_test.cpp reads it with curl -N",
    ("GET", "/"): "the console's page: tests/console/console_test.mjs loads it in Chromium",
    ("GET", "/console/{file}"): "the console's files: tests/console/console_test.mjs loads them in Chromium",
}

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def fail(findings, msg):
    findings.append(msg)


def inline_refs(node, schemas, depth=0):
    """The schema with every #/components/schemas/X reference replaced by X itself."""
    if depth > 50:
        raise ValueError("schema references nest too deep (a cycle?)")
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            prefix = "#/components/schemas/"
            if not ref.startswith(prefix) or ref[len(prefix):] not in schemas:
                raise ValueError(f"unresolvable $ref {ref}")
            rest = {k: v for k, v in node.items() if k != "$ref"}
            target = inline_refs(schemas[ref[len(prefix):]], schemas, depth + 1)
            if rest:  # 3.1 allows siblings of $ref (a description): keep them beside it
                return {"allOf": [target], **inline_refs(rest, schemas, depth + 1)}
            return target
        return {k: inline_refs(v, schemas, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(v, schemas, depth + 1) for v in node]
    return node


def spec_operations(spec):
    ops = {}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in METHODS:
                ops[(method.upper(), path)] = op
    return ops


def check_routes(spec, routes_binary, findings):
    out = subprocess.run([routes_binary], check=True, capture_output=True, text=True).stdout
    served = set(STATIC)
    for line in out.splitlines():
        method, path = line.split(" ", 1)
        served.add((method, path))
    described = set(spec_operations(spec))
    for m, p in sorted(served - described):
        fail(findings, f"served but not in openapi.yaml: {m} {p}")
    for m, p in sorted(described - served):
        fail(findings, f"in openapi.yaml but not served: {m} {p}")
    return served


def check_schemas(spec, findings):
    schemas = spec.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        try:
            jsonschema.Draft202012Validator.check_schema(inline_refs(schema, schemas))
        except Exception as e:  # noqa: BLE001 (any failure is a finding)
            fail(findings, f"components.schemas.{name} is not valid JSON Schema: {e}")
    for (method, path), op in spec_operations(spec).items():
        if "operationId" not in op:
            fail(findings, f"{method} {path}: no operationId")
        for status, resp in op.get("responses", {}).items():
            for ctype, media in (resp.get("content") or {}).items():
                if "schema" in media:
                    try:
                        jsonschema.Draft202012Validator.check_schema(inline_refs(media["schema"], schemas))
                    except Exception as e:  # noqa: BLE001
                        fail(findings, f"{method} {path} {status} {ctype}: invalid schema: {e}")


def template_match(template, path):
    """Number of literal segments matched (higher is more specific), or None."""
    t = template.strip("/").split("/")
    p = path.strip("/").split("/")
    if template == "/" or path == "/":
        return 0 if template == path else None
    if len(t) != len(p):
        return None
    literal = 0
    for ts, ps in zip(t, p):
        if ts.startswith("{") and ts.endswith("}"):
            if ps == "":
                return None
        elif ts != urllib.parse.unquote(ps):
            return None
        else:
            literal += 1
    return literal


def find_operation(ops, method, path):
    best, best_score = None, -1
    for (m, template), op in ops.items():
        if m != method:
            continue
        score = template_match(template, path)
        if score is not None and score > best_score:
            best, best_score = (m, template), score
    return best


def check_responses(spec, binary, tests, findings):
    schemas = spec.get("components", {}).get("schemas", {})
    ops = spec_operations(spec)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "api.jsonl")
        env = dict(os.environ, RSGATE_API_LOG=log)
        r = subprocess.run([binary, "-#", tests], env=env)
        if r.returncode != 0:
            fail(findings, f"the integration tests {tests} failed (exit {r.returncode}); their answers are not checked")
            return
        with open(log, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    exercised, validated, unmatched = set(), 0, 0
    for line in lines:
        rec = json.loads(line)
        method, target, status = rec["method"], rec["target"], rec["status"]
        path = target.split("?", 1)[0]
        key = find_operation(ops, method, path)
        if key is None:
            # A path no operation has: what the tests send on purpose to see 404/405/400.
            if status < 400:
                fail(findings, f"{method} {target} answered {status} but openapi.yaml has no such operation")
            unmatched += 1
            continue
        op = ops[key]
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        if resp is None:
            fail(findings, f"{method} {key[1]}: status {status} is not described (request {target})")
            continue
        exercised.add(key)
        ctype = (rec["content_type"] or "").split(";")[0].strip()
        content = resp.get("content") or {}
        if ctype != "application/json":
            if content and ctype not in content:
                fail(findings, f"{method} {key[1]} {status}: content type {ctype!r} is not described")
            continue
        media = content.get("application/json")
        if media is None or "schema" not in media:
            fail(findings, f"{method} {key[1]} {status}: a JSON answer without a described schema")
            continue
        try:
            body = json.loads(rec["body"])
        except json.JSONDecodeError:
            fail(findings, f"{method} {target} {status}: the answer is not JSON")
            continue
        schema = inline_refs(media["schema"], schemas)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path))
        for e in errors[:3]:
            where = "/".join(str(x) for x in e.path) or "(root)"
            fail(findings, f"{method} {key[1]} {status}: {where}: {e.message[:300]} (request {target})")
        validated += 1
    for key in sorted(ops):
        if key in exercised or key in UNEXERCISED:
            continue
        fail(findings, f"{key[0]} {key[1]}: no flow test exercised it; add one or list it in UNEXERCISED")
    print(f"openapi_check: {len(lines)} answers, {validated} JSON bodies validated, {unmatched} to paths "
          f"outside the API, {len(exercised)} of {len(ops)} operations exercised")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--routes", required=True, help="the api_routes_dump program")
    ap.add_argument("--run", help="the integration_test program (responses mode)")
    ap.add_argument("--tests", default="", help="its test files as Catch2 filename tags")
    a = ap.parse_args()
    with open(a.spec, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    findings = []
    if not str(spec.get("openapi", "")).startswith("3.1"):
        fail(findings, "openapi.yaml must be OpenAPI 3.1.x")
    check_routes(spec, a.routes, findings)
    check_schemas(spec, findings)
    if a.run:
        check_responses(spec, a.run, a.tests, findings)
    for f in findings:
        print("openapi_check:", f)
    if findings:
        print(f"openapi_check: {len(findings)} finding(s)")
        return 1
    print("openapi_check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
