"""Checks what SAM CLI's own local emulation makes of template.yaml, with SAM CLI's own code.

    $VENV/bin/python scripts/check_sam_local.py template.yaml     # VENV: a venv with aws-sam-cli

- `sam local start-api` serves every operation of openapi.yaml (with and without the trailing
  slash) with the function whose HttpApi event declares it, behind the HttpApi's authorizer;
- it still does with the resources in another order: SAM CLI picks its API parser by the first
  API resource of the template, and a raw AWS::ApiGatewayV2::* one first makes it take the
  CloudFormation path, which crashes on the WebSocket `$connect` route and never reads
  functions' Events (aws-sam-cli#2610);
- every `sam local invoke X -e events/Y.json` of README.md names a function and an event file.
Exits 1 with the reasons on any failure.
"""

import logging
import os
import re
import sys
from collections import OrderedDict
from urllib.parse import urlparse

from samcli.cli.types import CfnParameterOverridesType
from samcli.commands._utils.template import get_template_data
from samcli.lib.config.samconfig import SamConfig
from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.local.apigw.route import Route

# SAM CLI warns about authorizer fidelity on every load; errors still show.
logging.getLogger("samcli").setLevel(logging.ERROR)

FALLBACK_PARAMETERS = {"JwtAlgorithm": "HS256", "JwtIssuer": "forum-local", "JwtAudience": "forum-api"}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DEFAULT_ROUTE = ("X-AMAZON-APIGATEWAY-ANY-METHOD", "$default")  # how SAM CLI keys the $default route

failures: list[str] = []


LANGUAGE_EXTENSIONS = False


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL: {message}")


def parameter_overrides(root: str) -> dict:
    """What `sam local start-api` would read from samconfig.toml ([default.local_start_api.parameters],
    merged over [default.global.parameters]), parsed by SAM CLI's own option type."""
    config = SamConfig(root, "samconfig.toml")
    if not config.exists():
        print(f"samconfig.toml not found: using the built-in parameters {FALLBACK_PARAMETERS}")
        return dict(FALLBACK_PARAMETERS)
    section = config.get_all(["local", "start-api"], "parameters")
    # The template uses Fn::ForEach (AWS::LanguageExtensions), which SAM CLI expands locally
    # only when asked: samconfig.toml asks for every local command.
    global LANGUAGE_EXTENSIONS
    LANGUAGE_EXTENSIONS = bool(section.get("language_extensions"))
    if not LANGUAGE_EXTENSIONS:
        fail("samconfig.toml [default.local_start_api.parameters] must set language_extensions = true")
    value = section.get("parameter_overrides")
    overrides = CfnParameterOverridesType().convert(value, None, None) if value else {}
    print(f"parameters from samconfig.toml [default.local_start_api]: {', '.join(overrides) or 'none'}")
    return overrides


def ref_id(value) -> str | None:
    """Logical id of `!Ref X` / `X`, or of `!GetAtt X.Arn`."""
    if isinstance(value, str):
        return value.split(".")[0]
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def expected_routes(template: dict) -> dict:
    """(METHOD, path) -> (function, authorizer name or None, authorizer function), from the template's
    own HttpApi events: what SAM CLI's provider must agree with."""
    resources = template["Resources"]
    global_auth = template.get("Globals", {}).get("HttpApi", {}).get("Auth", {})
    routes = {}
    for function, resource in resources.items():
        # `Fn::ForEach::...` entries (log groups and alarms) are lists, not resources.
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api_id = ref_id(props.get("ApiId"))
            auth = resources[api_id]["Properties"].get("Auth", {}) if api_id else global_auth
            authorizer = props.get("Auth", {}).get("Authorizer", auth.get("DefaultAuthorizer"))
            if authorizer == "NONE":
                authorizer = None
            authorizer_fn = ref_id(auth.get("Authorizers", {}).get(authorizer, {}).get("FunctionArn"))
            if "Path" not in props and "Method" not in props:
                keys = [DEFAULT_ROUTE]  # an HttpApi event without path and method is the $default route
            else:
                method = props["Method"].upper()
                methods = Route.ANY_HTTP_METHODS if method == "ANY" else [method]
                keys = [(m, props["Path"]) for m in methods]
            for key in keys:
                if key in routes:
                    fail(f"template: {' '.join(key)} is declared by {routes[key][0]} and {function}")
                routes[key] = (function, authorizer, authorizer_fn)
    return routes


def sam_routes(template_file: str, template: dict | None, overrides: dict) -> tuple[str, dict]:
    """(provider SAM CLI picks, {(METHOD, path): (function, authorizer, authorizer function)})
    as `sam local start-api` builds them: the same stack loading, the same ApiProvider."""
    if template is None:
        stacks, _ = SamLocalStackProvider.get_stacks(
            template_file, parameter_overrides=overrides, language_extensions_enabled=LANGUAGE_EXTENSIONS
        )
    else:  # a reordered copy; relative paths (nested stacks) resolve from the cwd, the template's dir
        stacks, _ = SamLocalStackProvider.get_stacks(
            template_dictionary=template, parameter_overrides=overrides, language_extensions_enabled=LANGUAGE_EXTENSIONS
        )
    provider = type(ApiProvider.find_api_provider(stacks)).__name__
    routes = {}
    for route in ApiProvider(stacks, cwd=os.getcwd()).routes:
        auth = route.authorizer_object  # linked by SAM's ApiCollector from the API's (default) authorizer
        for method in route.methods:
            routes[(method, route.path)] = (route.function_name, route.authorizer_name, getattr(auth, "lambda_name", None))
    return provider, routes


def compare(label: str, expected: dict, actual: dict) -> None:
    # SAM CLI adds OPTIONS to every route when the API has CORS, behind whichever function of
    # the path it meets first (an order that varies from run to run); in AWS, API Gateway answers
    # preflights itself. No route declares OPTIONS, so they are left out on both sides.
    actual = {k: v for k, v in actual.items() if k[0] != "OPTIONS"}
    expected = {k: v for k, v in expected.items() if k[0] != "OPTIONS"}
    for key in sorted(expected.keys() | actual.keys()):
        if expected.get(key) != actual.get(key):
            fail(f"{label}: {' '.join(key)}: expected (function, authorizer, its function) "
                 f"{expected.get(key)}, SAM CLI gives {actual.get(key)}")


def reordered(template: dict, how: str) -> dict:
    copy = OrderedDict(template)
    resources = template["Resources"]
    if how == "ApiGatewayV2 first":
        keys = sorted(
            resources,
            key=lambda k: not (isinstance(resources[k], dict) and resources[k].get("Type", "").startswith("AWS::ApiGatewayV2::")),
        )
    else:
        keys = list(reversed(resources))
    copy["Resources"] = OrderedDict((k, resources[k]) for k in keys)
    return copy


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    template_file = os.path.abspath(sys.argv[1])
    root = os.path.dirname(template_file)
    os.chdir(root)  # as `sam local` run beside the template: CodeUri, nested stacks, events/
    overrides = parameter_overrides(root)
    template = get_template_data(template_file)
    expected = expected_routes(template)

    # 1. The template as it is.
    provider, actual = sam_routes(template_file, None, overrides)
    print(f"{os.path.basename(template_file)}: SAM CLI parses its APIs with {provider}: {len(actual)} route keys")
    compare("template.yaml", expected, actual)
    # Every route, $default included, runs behind the HttpApi's default Lambda authorizer. SAM CLI
    # exposes it per route (Route.authorizer_name, Route.authorizer_object.lambda_name), not per API.
    defaults = set()
    for resource in template["Resources"].values():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::HttpApi":
            auth = resource.get("Properties", {}).get("Auth", {})
            name = auth.get("DefaultAuthorizer")
            defaults.add((name, ref_id(auth.get("Authorizers", {}).get(name, {}).get("FunctionArn"))))
    for key, (function, authorizer, authorizer_fn) in sorted(actual.items()):
        if key[0] != "OPTIONS" and (authorizer, authorizer_fn) not in defaults:
            fail(f"{' '.join(key)} ({function}) runs behind authorizer {authorizer} ({authorizer_fn}), "
                 f"not the HttpApi default {sorted(defaults)}")

    # 2. Every openapi.yaml operation is a route, with and without its trailing slash.
    spec = get_template_data(os.path.join(root, "openapi.yaml"))  # SAM's YAML/JSON loader
    bases = {urlparse(server["url"]).path.rstrip("/") for server in spec.get("servers", [{"url": ""}])}
    if len(bases) != 1:
        fail(f"openapi.yaml: servers disagree on the base path: {sorted(bases)}")
    base = sorted(bases)[0]
    operations = 0
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operations += 1
            op = item[method].get("operationId", f"{method} {path}")
            bare = base + path.rstrip("/")
            for variant in (bare, bare + "/"):
                key = (method.upper(), variant)
                if key not in actual:
                    fail(f"openapi {op}: {' '.join(key)} is not served by sam local start-api")
                elif actual[key] != actual.get((method.upper(), bare)):
                    fail(f"openapi {op}: {bare} and {bare}/ are served differently: "
                         f"{actual.get((method.upper(), bare))} vs {actual[key]}")
    print(f"openapi.yaml: {operations} operations (base path '{base or '/'}') checked with and without '/'")

    # 3. The same routes whatever the order of the template's resources.
    for how in ("ApiGatewayV2 first", "reversed"):
        try:
            provider, routes = sam_routes(template_file, reordered(template, how), overrides)
        except Exception as error:  # what `sam local start-api` would die of
            fail(f"resources {how}: SAM CLI's API provider fails: {type(error).__name__}: {error}")
            continue
        print(f"resources {how}: SAM CLI parses with {provider}: {len(routes)} route keys")
        compare(f"resources {how}", actual, routes)

    # 4. README's `sam local invoke` lines name real functions and event files.
    stacks, _ = SamLocalStackProvider.get_stacks(
            template_file, parameter_overrides=overrides, language_extensions_enabled=LANGUAGE_EXTENSIONS
        )
    functions = SamFunctionProvider(stacks)
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    invocations = re.findall(r"sam local invoke (\S+) -e ([^\s`]+)", readme)
    for function, event in invocations:
        if functions.get(function) is None:
            fail(f"README: sam local invoke {function}: no such function in the template")
        if not os.path.isfile(event):
            fail(f"README: sam local invoke {function} -e {event}: no such event file")
    if not invocations:
        fail("README: no `sam local invoke X -e events/Y.json` line found")
    print(f"README.md: {len(invocations)} sam local invoke lines checked")

    if failures:
        print(f"check_sam_local: {len(failures)} failure(s)")
        return 1
    print("check_sam_local: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
