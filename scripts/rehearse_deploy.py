"""Deploy rehearsal: applies, offline, the rules AWS enforces when this stack is built, packaged,
deployed and called, with SAM CLI's own code (no AWS account, no Docker, no Rust build).

    $VENV/bin/python scripts/rehearse_deploy.py                      # build, package, rules, README
    $VENV/bin/python scripts/rehearse_deploy.py --steps rules        # rules on template.yaml, no build (2 s)
    $VENV/bin/python scripts/rehearse_deploy.py --self-test           # each rule fails when its fix is reverted
    $VENV/bin/python scripts/rehearse_deploy.py --write-translated local/translated-template.json
    $VENV/bin/python scripts/rehearse_deploy.py --check-translated local/translated-template.json

VENV: ~/.cache/forum-ci/sam-cli-1.170.0 (aws-sam-cli==1.170.0) plus `pip install "moto[server]==5.2.6"`
(the S3 `sam package` uploads to). Options: --root DIR (default: this script's repository),
--steps (comma-separated, of build,package,rules,readme; all by default), --manifest FILE (default
ROOT/local/aws-calls.json), --readme FILE (default ROOT/README.md), --keep-work (keep the temp dir).
Prints one PASS/FAIL line per step and per rule; exits 1 with the reasons on any failure. Writes
nothing in the repository (but --write-translated's file). Never calls AWS: dummy credentials, no
profile, and every AWS endpoint on loopback (moto for `sam package`, a closed port otherwise).

build: `sam build --template-file ROOT/template.yaml` into a temp --build-dir/--cache-dir, from a temp
  cwd (with `cached = true` SAM CLI makes .aws-sam/deps in its cwd). SAM CLI reads the samconfig.toml
  beside the template, so ROOT's [default.build.parameters] apply. Stand-ins first on PATH replace
  the Rust compile: `cargo-lambda` (prints a version) and `cargo`, which answers `cargo metadata`
  and writes `<temp>/lambda/<bin>/bootstrap` for `cargo lambda build --bin <bin>`. The crash of a
  samconfig.toml without `language_extensions` (aws-sam-cli #5647) is named as such.
package: moto on a free loopback port; `sam package --s3-bucket` of the built template with
  `--config-file ROOT/samconfig.toml` (given a --template-file elsewhere, SAM CLI would read the
  samconfig.toml beside it; `sam deploy` after `sam build` reads ROOT's); the nested templates
  (realtime/*.yaml, as uploaded) are read back from moto.
rules: run on what CloudFormation receives after its transforms: Fn::ForEach expanded here as
  CloudFormation does (only `[Identifier, [literal strings], {fragment}]`: `${Id}`, `&{Id}` and
  `{"Ref": Id}` substituted, nothing else resolved; any other shape, Fn::Length or Fn::ToJsonString
  refused), AWS::LanguageExtensions dropped, then samtranslator. The packaged template if `package`
  ran, else template.yaml with every CodeUri and nested Location at a placeholder. A small evaluator
  resolves intrinsics (Ref, Fn::Sub, Fn::GetAtt, Fn::Join/Select/Split/If/FindInMap, conditions,
  nested stacks' parameters and Outputs) with made-up but realistic names and ids, for every
  parameter set the template accepts (its Parameters and Rules) among the values its Conditions and
  Rules tell apart (each AllowedValue, else empty / Default / a sample).
  R1  authorizer-invocable: every Lambda authorizer (the HttpApi's OpenAPI Body, AWS::ApiGatewayV2::
      Authorizer) has a lambda:InvokeFunction permission for apigateway.amazonaws.com whose SourceArn
      covers <api>/authorizers/<id>.
  R2  route-invocable: every route's function, likewise for <api>/<stage>/<METHOD>/<path> (path
      variables filled, no trailing slash, as API Gateway presents it) or <api>/<stage>/<route key>.
  R3  no-preflight-through-an-authorizer: with CORS on an HTTP API, OPTIONS of every route path and
      of an unknown one selects (most specific path: literal > {var} > {proxy+}, then an explicit
      method over ANY, else $default) a route without an authorizer, or none.
  R4  every-call-allowed: each call of the manifest ({"<binary>": [[action, resource], ...]} or
      [{"action", "resource"}]; keys starting with _ are comments; every function's binary listed)
      is allowed by its function's role (inline policies, attached AWS::IAM::Policy, the managed
      policies SAM attaches; IAM wildcards; Deny wins; statement Conditions assumed met). Resources:
      table, table/index/<name>, stream, bucket/<key>, connections/<METHOD>, secret/<parameter or
      AWS::SecretsManager::Secret> (skipped where the parameter is empty or the resource's Condition
      false), queue/<logical id>.
  R5  encrypted-topics-and-queues-usable: a topic or queue an AWS service sends to (alarm actions,
      S3 notifications, EventBridge targets) is not encrypted with an AWS managed key (alias/aws/*),
      and a customer managed key's policy allows that service kms:GenerateDataKey* and kms:Decrypt.
  R6  quotas: no ReservedConcurrentExecutions / provisioned concurrency; MemorySize <= 3008; Timeout
      <= 900, <= 29 behind API Gateway (routes and authorizers); each environment <= 4096 characters
      and each role's inline policies <= 10240 (compact JSON) at the longest values the parameters
      allow (MaxLength, longest AllowedValue, a bounded AllowedPattern; a Number: MaxValue's digits,
      else 20; a String parameter with no bound fails) with a 128-character stack name, a 14-character
      region and CloudFormation's generated names; resources <= 500, parameters and outputs <= 200,
      templates <= 1 MB; authorizer TTLs <= 3600 s; SQS retention 60..1209600 s; an event source
      mapping's FilterCriteria: <= 5 filters (Lambda's default quota), each pattern <= 4096 characters.
  R7  naming: every explicit name (buckets, CloudFront OAC and policies, log groups, APIs, roles,
      functions, queues, topics, secrets, KMS aliases, tables, alarms) satisfies its service's rule
      for stack names of 128 characters with capitals, `a`, `xn--forum`, `forum-s3alias`, `Forum--ol-s3`
      (nested stacks: `<parent>-<LogicalId>-<13 random>`, at most 128).
  R8  data-survives: tables and buckets: DeletionPolicy Retain (or RetainExceptOnCreate),
      UpdateReplacePolicy Retain.
  R9  access-logs: every API stage has AccessLogSettings.DestinationArn; a WebSocket or REST stage that
      logs needs an AWS::ApiGateway::Account with CloudWatchRoleArn created first (DependsOn or
      references, transitively, of the stage or of the nested stack holding it).
  R10 no-secret-in-environment: no {{resolve:secretsmanager:...}} / {{resolve:ssm-secure:...}} nor a
      NoEcho parameter in a function's environment.
  R11 language-extensions: with AWS::LanguageExtensions, samconfig.toml sets language_extensions =
      true for build, package, deploy, sync, validate and the local_* commands (or in global).
readme: each ```sh block after a `<!-- rehearsed -->` line runs in bash (-o pipefail) in a temp
  dir whose PATH holds only recording shims of sam, aws, curl, openssl and jq (plausible output:
  `openssl rand -hex N` 2N hex digits, curl a small JWKS) and a few text tools; any other command
  fails. Then every recorded `sam ...` is parsed by SAM CLI's own click commands (never invoked) beside
  copies of template.yaml and samconfig.toml (a `sam deploy --guided` saves a stack name there, as
  it would); its --parameter-overrides, as SAM CLI parses them (printed), are checked against
  template.yaml: names, AllowedValues, AllowedPattern, Min/MaxLength, Min/MaxValue and, for a first
  `sam deploy`/`sam sync`, required parameters and the Rules; a value SAM CLI's parser cuts (a JWKS
  or PEM pasted as `Key="$(curl ...)"` arrives as `{` or `-----BEGIN`) is named. Every `aws <service>
  <operation> --option` is checked against botocore's service models (kebab-case names).
self-test: for each rule, template.yaml (and samconfig.toml) with its fix reverted (a mutation that
  fails loudly when the fix is not there), translated again: exactly that rule newly fails, and the
  unmutated template passes it.
--write-translated / --check-translated PATH: the translated template.yaml for forum-local, written
  (or compared byte for byte) as JSON with sorted keys, indent 1, UTF-8 and a trailing newline:
    {"template": <template.yaml after Fn::ForEach and the SAM transform; each function's code at
                  s3://rehearsal-placeholder/<LogicalId>, each nested Location at
                  https://s3.amazonaws.com/rehearsal-placeholder/<path as written>>,
     "nested": {"<LogicalId of each AWS::Serverless::Application>": <its template as parsed
                (translated too if it has a Transform)>}}
  with template.Metadata.ForumLocal = {"SourceSha256": <sha256 hex of template.yaml's bytes>,
  "Generator": "samtranslator <v> (SAM CLI <v>), scripts/rehearse_deploy.py",
  "Nested": {"<LogicalId>": {"Location": <path as written>, "Sha256": <sha256 hex of its bytes>}}}.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlparse

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
LONGEST_REGION = "ap-southeast-4"  # 14 characters, as long as any commercial region's name
PACKAGE_BUCKET = "forum-rehearsal-artifacts"
PLACEHOLDER_BUCKET = "rehearsal-placeholder"
DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: any AWS call that escapes fails at once

# Never AWS: dummy credentials, no profile, and every endpoint on loopback. Set before SAM CLI
# and botocore are imported (samtranslator also reads AWS_DEFAULT_REGION).
os.environ.update({
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ENDPOINT_URL": DEAD_ENDPOINT,
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAM_CLI_TELEMETRY": "0",
})
for _variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
                  "SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS"):
    os.environ.pop(_variable, None)
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

try:
    from samcli.yamlhelper import yaml_parse  # noqa: E402  (after the environment above)
except ModuleNotFoundError:
    sys.exit("rehearse_deploy: run this with the python of a venv holding aws-sam-cli==1.170.0 "
             "(~/.cache/forum-ci/sam-cli-1.170.0/bin/python)")

logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics warn on every translation
logging.getLogger("samcli").setLevel(logging.CRITICAL)  # SAM CLI's own logs: failures are reported here

failures: list[str] = []


# ---------------------------------------------------------------------------------------------
# Reporting

def passed(label: str, detail: str = "") -> None:
    print(f"PASS {label}" + (f": {detail}" if detail else ""))


def failed(label: str, reasons: list[str]) -> None:
    """One FAIL line, then each reason indented; every reason joins the summary."""
    print(f"FAIL {label}" + (f": {reasons[0]}" if len(reasons) == 1 else f": {len(reasons)} problems"))
    if len(reasons) > 1:
        for reason in reasons:
            print(f"    - {reason}")
    failures.extend(f"{label.split(' (')[0]}: {reason}" for reason in reasons)


def report(label: str, reasons: list[str], detail: str = "") -> bool:
    if reasons:
        failed(label, reasons)
        return False
    passed(label, detail)
    return True


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def short(value: Any, limit: int = 60) -> str:
    text = (value if isinstance(value, str) else json.dumps(value, default=str)).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------
# Templates: loading, Fn::ForEach, the SAM transform

class TranslateError(Exception):
    """The template cannot be turned into what CloudFormation would deploy."""


def load_yaml(path: Path) -> dict:
    return yaml_parse(path.read_text(encoding="utf-8"))


def transforms(template: dict) -> list[str]:
    value = template.get("Transform", [])
    return [value] if isinstance(value, str) else list(value)


def uses_language_extensions(template: dict) -> bool:
    return "AWS::LanguageExtensions" in transforms(template)


FOR_EACH = "Fn::ForEach::"
UNEXPANDED_EXTENSIONS = ("Fn::Length", "Fn::ToJsonString")


def substitute(node: Any, identifier: str, value: str) -> Any:
    """One Fn::ForEach iteration: `${Id}` and `&{Id}` (non-alphanumerics dropped) in keys and
    strings, and `{"Ref": Id}`, replaced by the collection's value."""
    if isinstance(node, str):
        return node.replace("${%s}" % identifier, value).replace("&{%s}" % identifier, re.sub(r"[^A-Za-z0-9]", "", value))
    if isinstance(node, list):
        return [substitute(item, identifier, value) for item in node]
    if isinstance(node, dict):
        if node == {"Ref": identifier}:
            return value
        return {substitute(k, identifier, value): substitute(v, identifier, value) for k, v in node.items()}
    return node


def expand_loop(key: str, loop: Any) -> dict:
    shape_ok = (
        isinstance(loop, list) and len(loop) == 3 and isinstance(loop[0], str)
        and isinstance(loop[1], list) and all(isinstance(v, str) for v in loop[1])
        and isinstance(loop[2], dict)
    )
    if not shape_ok:
        raise TranslateError(f"{key}: only [Identifier, [literal strings], {{fragment}}] is expanded here, "
                             f"not {short(loop, 200)}")
    identifier, values, fragment = loop
    out: dict = {}
    for value in values:
        for k, v in expand_foreach(substitute(fragment, identifier, value)).items():
            if k in out:
                raise TranslateError(f"{key}: two iterations both produce {k} (the key must use ${{{identifier}}})")
            out[k] = v
    return out


def expand_foreach(node: Any) -> Any:
    """Every `Fn::ForEach::X` mapping key, anywhere, expanded in place (nested loops after their
    outer identifier is substituted)."""
    if isinstance(node, list):
        return [expand_foreach(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(FOR_EACH):
            for k, v in expand_loop(key, value).items():
                if k in out or k in node:
                    raise TranslateError(f"{key} produces {k}, which already exists")
                out[k] = v
        else:
            out[key] = expand_foreach(value)
    return out


def find_keys(node: Any, keys: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys:
                found.append(k)
            found += find_keys(v, keys)
    elif isinstance(node, list):
        for item in node:
            found += find_keys(item, keys)
    return found


def apply_language_extensions(template: dict) -> dict:
    """What CloudFormation's AWS::LanguageExtensions transform hands to the SAM transform."""
    out = expand_foreach(copy.deepcopy(template))
    leftovers = sorted(set(find_keys(out, UNEXPANDED_EXTENSIONS)))
    if leftovers:
        raise TranslateError(f"{', '.join(leftovers)} (AWS::LanguageExtensions) is not expanded by this rehearsal")
    rest = [t for t in transforms(out) if t != "AWS::LanguageExtensions"]
    if rest:
        out["Transform"] = rest if len(rest) > 1 else rest[0]
    else:
        out.pop("Transform", None)
    return out


def sam_transform(template: dict) -> dict:
    """The template CloudFormation deploys: Fn::ForEach expanded, then SAM's own translator."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser import parser
    from samtranslator.translator.translator import Translator

    expanded = apply_language_extensions(template)
    if "AWS::Serverless-2016-10-31" not in transforms(expanded):
        return expanded
    translator = Translator(managed_policy_map=None, sam_parser=parser.Parser(), plugins=[])
    try:
        return translator.translate(sam_template=expanded, parameter_values={}, get_managed_policy_map=lambda: {})
    except InvalidDocumentException as error:
        raise TranslateError("SAM transform: " + "; ".join(c.message for c in error.causes)) from error


def with_placeholders(template: dict) -> dict:
    """template.yaml as `sam package` would hand it on, without building or uploading: every
    function's code and nested template at a fixed placeholder S3 location."""
    out = expand_foreach(copy.deepcopy(template))  # functions a Fn::ForEach stamps out get theirs too
    for logical_id, resource in resources_of(out):
        props = resource.setdefault("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and "InlineCode" not in props and "ImageUri" not in props:
            props["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
        elif kind == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
        elif kind == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = f"https://s3.amazonaws.com/{PLACEHOLDER_BUCKET}/{props['Location']}"
    globals_function = out.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_function:
        globals_function["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/Globals"
    return out


def resources_of(template: dict) -> Iterator[tuple[str, dict]]:
    """(logical id, resource) of Resources, Fn::ForEach entries left out."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        if isinstance(resource, dict) and not logical_id.startswith(FOR_EACH):
            yield logical_id, resource


def nested_locations(template: dict) -> dict[str, str]:
    """AWS::Serverless::Application logical id -> its local template path (template.yaml as written)."""
    out = {}
    for logical_id, resource in resources_of(expand_foreach(template)):
        location = resource.get("Properties", {}).get("Location")
        if resource.get("Type") == "AWS::Serverless::Application" and isinstance(location, str):
            out[logical_id] = location
    return out


def load_nested_sources(root: Path, template: dict) -> dict[str, dict]:
    return {logical_id: load_yaml(root / location) for logical_id, location in nested_locations(template).items()}


def translate_source(template: dict, nested: dict[str, dict]) -> tuple[dict, dict[str, dict]]:
    """template.yaml (and its nested templates) as CloudFormation would receive them, without a build."""
    translated = sam_transform(with_placeholders(template))
    return translated, {k: (sam_transform(v) if v.get("Transform") else v) for k, v in nested.items()}


# ---------------------------------------------------------------------------------------------
# Parameters: constraints, Rules, the parameter sets rules are evaluated for

def rule_value(node: Any, values: Mapping[str, str], declared: Mapping[str, dict]) -> Any:
    """A template Rules expression over parameter values (lists for list-typed parameters)."""
    if isinstance(node, dict) and len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            if arg not in values:
                raise KeyError(arg)
            return split_if_list(values[arg], declared.get(arg, {}))
        if key == "Fn::Equals":
            return str(rule_value(arg[0], values, declared)) == str(rule_value(arg[1], values, declared))
        if key == "Fn::Not":
            return not rule_value(arg[0], values, declared)
        if key == "Fn::And":
            return all(rule_value(a, values, declared) for a in arg)
        if key == "Fn::Or":
            return any(rule_value(a, values, declared) for a in arg)
        if key == "Fn::Contains":
            return str(rule_value(arg[1], values, declared)) in [str(v) for v in rule_value(arg[0], values, declared)]
        if key == "Fn::EachMemberEquals":
            return all(str(v) == str(rule_value(arg[1], values, declared)) for v in rule_value(arg[0], values, declared))
        if key == "Fn::EachMemberIn":
            allowed = [str(v) for v in rule_value(arg[1], values, declared)]
            return all(str(v) in allowed for v in rule_value(arg[0], values, declared))
        raise ValueError(f"{key} is not evaluated in Rules here")
    if isinstance(node, list):
        return [rule_value(item, values, declared) for item in node]
    return node


def is_list_type(declaration: Mapping) -> bool:
    kind = str(declaration.get("Type", "String"))
    return kind == "CommaDelimitedList" or kind.startswith("List<")


def split_if_list(value: str, declaration: Mapping) -> Any:
    return value.split(",") if is_list_type(declaration) else value


def value_problems(name: str, value: str, declaration: Mapping) -> list[str]:
    """What CloudFormation says of one parameter value (constraints of its declaration)."""
    problems = []
    hint = f" ({declaration['ConstraintDescription']})" if "ConstraintDescription" in declaration else ""
    items = value.split(",") if is_list_type(declaration) else [value]
    if "AllowedValues" in declaration:
        allowed = [str(v) for v in declaration["AllowedValues"]]
        for item in items:
            if item not in allowed:
                problems.append(f"{name}={short(item)!s} is not one of AllowedValues {allowed}")
    if "AllowedPattern" in declaration:
        pattern = declaration["AllowedPattern"]
        for item in items:
            if not re.fullmatch(pattern, item, flags=re.DOTALL):
                problems.append(f"{name}={short(item)!s} does not match AllowedPattern {pattern}{hint}")
    if not is_list_type(declaration):
        if "MinLength" in declaration and len(value) < int(declaration["MinLength"]):
            problems.append(f"{name} is {len(value)} characters, MinLength is {declaration['MinLength']}{hint}")
        if "MaxLength" in declaration and len(value) > int(declaration["MaxLength"]):
            problems.append(f"{name} is {len(value)} characters, MaxLength is {declaration['MaxLength']}{hint}")
    if str(declaration.get("Type")) in ("Number", "List<Number>"):
        for item in items:
            try:
                number = float(item)
            except ValueError:
                problems.append(f"{name}={short(item)!s} is not a number")
                continue
            if "MinValue" in declaration and number < float(declaration["MinValue"]):
                problems.append(f"{name}={item} is below MinValue {declaration['MinValue']}")
            if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
                problems.append(f"{name}={item} is above MaxValue {declaration['MaxValue']}")
    return problems


def parameter_problems(template: dict, given: Mapping[str, str], require_all: bool = True, check_rules: bool = True) -> list[str]:
    """What CloudFormation refuses of a parameter set: undeclared names, constraints, missing
    required parameters, and the template's Rules (checked once every parameter has a value)."""
    declared = template.get("Parameters") or {}
    problems = [f"{name} is not a parameter of the template" for name in given if name not in declared]
    values = {n: str(d["Default"]) for n, d in declared.items() if "Default" in d}
    values.update({n: v for n, v in given.items() if n in declared})
    for name, declaration in declared.items():
        if name in values:
            problems += value_problems(name, values[name], declaration)
        elif require_all:
            problems.append(f"{name} has no Default and is not given")
    if not check_rules or any(name not in values for name in declared):
        return problems
    for rule_name, rule in (template.get("Rules") or {}).items():
        try:
            if "RuleCondition" in rule and not rule_value(rule["RuleCondition"], values, declared):
                continue
            for assertion in rule.get("Assertions", []):
                if not rule_value(assertion["Assert"], values, declared):
                    problems.append(f"Rules.{rule_name}: {assertion.get('AssertDescription', 'assertion fails')}")
        except (KeyError, ValueError, TypeError, IndexError) as error:
            problems.append(f"Rules.{rule_name} cannot be evaluated: {error!r}")
    return problems


SAMPLE_VALUES = {
    "arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:forum/rehearsal-AbCdEf",
    "url": "https://issuer.example.com/.well-known/jwks.json",
    "origin": "https://forum.example.com",
    "secret": "0123456789abcdef" * 4,
    "email": "alarms@example.com",
    "word": "forum-rehearsal",
    "number": "1",
}


def sample_value(name: str, declaration: Mapping) -> str | None:
    """A plausible non-empty value the declaration accepts (names guide the first guess)."""
    if "AllowedValues" in declaration:
        return str(declaration["AllowedValues"][0])
    lowered = name.lower()
    order = ["word", "url", "origin", "arn", "secret", "email", "number"]
    for hint, kind in (("arn", "arn"), ("email", "email"), ("origin", "origin"), ("url", "url"), ("issuer", "url"),
                       ("secret", "secret"), ("key", "secret")):
        if hint in lowered:
            order.insert(0, kind)
            break
    if str(declaration.get("Type")) == "Number":
        order.insert(0, "number")
    for kind in order:
        if not value_problems(name, SAMPLE_VALUES[kind], declaration):
            return SAMPLE_VALUES[kind]
    return None


def parameters_referenced(node: Any, declared: Mapping) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in declared:
            found.add(node["Ref"])
        for value in node.values():
            found |= parameters_referenced(value, declared)
    elif isinstance(node, list):
        for item in node:
            found |= parameters_referenced(item, declared)
    return found


MAX_PARAMETER_SETS = 1024
EMPTY = '""'


@dataclass(frozen=True)
class Scenario:
    """One deployment's unknowns: the parameter values and the names AWS would choose."""
    label: str
    parameters: Mapping[str, str]
    stack_name: str = "forum"
    long_names: bool = False  # generated names, ids and the region at their longest


def parameter_sets(template: dict) -> tuple[list[Scenario], list[str]]:
    """Every parameter set CloudFormation accepts (Parameters and Rules) among the values the
    template's Conditions and Rules tell apart: each AllowedValue, else empty / the Default / a
    sample. Other parameters: their Default, or a sample for a required one."""
    declared = template.get("Parameters") or {}
    problems = []
    base: dict[str, str] = {}
    for name, declaration in declared.items():
        if "Default" in declaration:
            base[name] = str(declaration["Default"])
        else:
            sample = sample_value(name, declaration)
            if sample is None:
                problems.append(f"no sample value satisfies parameter {name}'s constraints")
            else:
                base[name] = sample
    deciding = sorted(parameters_referenced([template.get("Conditions"), template.get("Rules")], declared))
    choices = []
    for name in deciding:
        declaration = declared[name]
        if "AllowedValues" in declaration:
            options = [str(v) for v in declaration["AllowedValues"]]
        else:
            options = list(dict.fromkeys([base.get(name, ""), "", sample_value(name, declaration) or ""]))
        choices.append(options)
    scenarios = []
    for combination in itertools.islice(itertools.product(*choices), MAX_PARAMETER_SETS):
        values = dict(base, **dict(zip(deciding, combination)))
        if parameter_problems(template, values):
            continue
        changed = [f"{n}={short(values[n], 24) or EMPTY}" for n in deciding if values[n] != str(declared[n].get("Default", ""))]
        scenarios.append(Scenario(label=" ".join(changed) or "defaults", parameters=values))
    if not scenarios:
        problems.append("no parameter set satisfies the template's Parameters and Rules "
                        f"(tried the values {dict(zip(deciding, choices))})")
    return scenarios, problems


def pattern_bound(pattern: str) -> int | None:
    """The longest string a regex can fully match, if finite."""
    import re._constants as constants
    import re._parser as regex_parser
    high = regex_parser.parse(pattern).getwidth()[1]
    return None if high >= int(constants.MAXREPEAT) else high


UNBOUNDED_NUMBER_DIGITS = 20  # a Number without MaxValue counts as the digits of the largest 64-bit integer


def longest_value(declaration: Mapping) -> str | None:
    """The longest value a parameter's constraints allow, or None if they set no bound."""
    if "AllowedValues" in declaration:
        return max((str(v) for v in declaration["AllowedValues"]), key=len)
    if str(declaration.get("Type")) == "Number":
        if "MaxValue" not in declaration:
            return "9" * UNBOUNDED_NUMBER_DIGITS
        bounds = [declaration[k] for k in ("MaxValue", "MinValue") if k in declaration]
        return "9" * max(len(str(b)) for b in bounds)
    limits = [int(declaration["MaxLength"])] if "MaxLength" in declaration else []
    if "AllowedPattern" in declaration and not is_list_type(declaration):
        bound = pattern_bound(declaration["AllowedPattern"])
        if bound is not None:
            limits.append(bound)
    return "x" * min(limits) if limits else None


def unbounded_marker(name: str) -> str:
    return f"\u2039unbounded {name}\u203a"


UNBOUNDED = re.compile("\u2039unbounded ([^\u203a]+)\u203a")

WORST_STACK_NAMES = (
    ("Forum-Rehearsal-" + "Stack-Name-With-Capitals-" * 5)[:127] + "X",  # 128, the most allowed
    "a",
    "xn--forum",
    "forum-s3alias",
    "Forum--ol-s3",
)


def worst_case(scenarios: list[Scenario], template: dict, stack_name: str = WORST_STACK_NAMES[0]) -> list[Scenario]:
    """Each parameter set at its longest: a non-empty value becomes the longest its declaration
    allows (a marker if nothing bounds it), AllowedValues of deciding parameters and empty values
    stay (the Rules and Conditions depend on them); names and ids at their longest."""
    declared = template.get("Parameters") or {}
    deciding = parameters_referenced([template.get("Conditions"), template.get("Rules")], declared)
    out = []
    for scenario in scenarios:
        values = {}
        for name, value in scenario.parameters.items():
            declaration = declared.get(name, {})
            keep = (name in deciding and ("AllowedValues" in declaration or value == ""))
            values[name] = value if keep else (longest_value(declaration) or unbounded_marker(name))
        out.append(Scenario(label=f"longest {scenario.label}", parameters=values, stack_name=stack_name, long_names=True))
    return out


# ---------------------------------------------------------------------------------------------
# Intrinsic functions: a small evaluator with made-up but realistic physical names and ids

NO_VALUE = object()  # AWS::NoValue


class Unresolvable(Exception):
    """An intrinsic function this evaluator cannot resolve."""


def token(*parts: str, length: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    """A deterministic made-up identifier."""
    digest = b""
    counter = 0
    while len(digest) < length:
        digest += hashlib.sha256("\0".join(parts + (str(counter),)).encode()).digest()
        counter += 1
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
HEX = "0123456789abcdef"

# Explicit physical names, by type; and the longest a generated one can be.
NAME_PROPERTIES = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::KMS::Alias": "AliasName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::ApiGatewayV2::Stage": "StageName",
}
GENERATED_NAME_LIMITS = {
    "AWS::Lambda::Function": 64, "AWS::DynamoDB::Table": 255, "AWS::S3::Bucket": 63, "AWS::SQS::Queue": 80,
    "AWS::SNS::Topic": 256, "AWS::IAM::Role": 64, "AWS::Logs::LogGroup": 512, "AWS::SecretsManager::Secret": 512,
    "AWS::CloudWatch::Alarm": 255, "AWS::CloudFormation::Stack": 128,
}
PSEUDO_PARAMETERS = ("AWS::AccountId", "AWS::Region", "AWS::StackName", "AWS::StackId", "AWS::Partition",
                     "AWS::URLSuffix", "AWS::NoValue", "AWS::NotificationARNs")


@dataclass
class StackInfo:
    path: str  # "" for the root stack, else the logical id of its AWS::CloudFormation::Stack
    template: dict
    parent: str | None = None


class Evaluator:
    """Resolves intrinsic functions of one stack for one scenario."""

    def __init__(self, model: Model, path: str, scenario: Scenario):
        self.model = model
        self.path = path
        self.scenario = scenario
        self.template = model.stacks[path].template
        self.resources = dict(resources_of(self.template))
        self.declared = self.template.get("Parameters") or {}
        self.region = LONGEST_REGION if scenario.long_names else REGION
        self._parameters: dict[str, Any] | None = None
        self._names: dict[str, str] = {}

    # -- the stack's context
    def stack_name(self) -> str:
        if not self.path:
            return self.scenario.stack_name
        parent = self.model.evaluator(self.model.stacks[self.path].parent or "", self.scenario)
        return self.generated_name(f"{parent.stack_name()}-{self.path}", "", 128, suffix_of=("stack", self.path))

    def stack_id(self) -> str:
        uuid = token("stack-id", self.path, self.stack_name(), length=32, alphabet=HEX)
        uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        return f"arn:{PARTITION}:cloudformation:{self.region}:{ACCOUNT}:stack/{self.stack_name()}/{uuid}"

    def parameters(self) -> dict[str, Any]:
        if self._parameters is None:
            given: Mapping[str, Any]
            if not self.path:
                given = self.scenario.parameters
            else:
                parent = self.model.evaluator(self.model.stacks[self.path].parent or "", self.scenario)
                node = parent.resources[self.path].get("Properties", {}).get("Parameters", {})
                given = {k: stringify(v) for k, v in parent.value(node).items()}
            values = {}
            for name, declaration in self.declared.items():
                if name in given:
                    values[name] = split_if_list(str(given[name]), declaration)
                elif "Default" in declaration:
                    values[name] = split_if_list(str(declaration["Default"]), declaration)
            self._parameters = values
        return self._parameters

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise Unresolvable(f"no condition {name}")
        return self.truth(conditions[name])

    def exists(self, logical_id: str) -> bool:
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def truth(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Fn::Equals":
                return stringify(self.value(arg[0])) == stringify(self.value(arg[1]))
            if key == "Fn::Not":
                return not self.truth(arg[0])
            if key == "Fn::And":
                return all(self.truth(a) for a in arg)
            if key == "Fn::Or":
                return any(self.truth(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Contains":
                return stringify(self.value(arg[1])) in [stringify(v) for v in self.value(arg[0])]
        value = self.value(node)
        if isinstance(value, bool):
            return value
        raise Unresolvable(f"not a condition: {short(node)}")

    # -- intrinsic functions
    def value(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref":
                    return self.ref(arg)
                if key.startswith("Fn::"):
                    return self.function(key, arg)
            out = {}
            for key, item in node.items():
                resolved = self.value(item)
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        return node

    def function(self, key: str, arg: Any) -> Any:
        if key == "Fn::If":
            return self.value(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
            return self.sub(text, variables)
        if key == "Fn::GetAtt":
            logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
            return self.getatt(logical_id, attribute)
        if key == "Fn::Join":
            items = self.value(arg[1])
            return stringify(self.value(arg[0])).join(stringify(v) for v in items)
        if key == "Fn::Select":
            items = self.value(arg[1])
            return items[int(stringify(self.value(arg[0])))]
        if key == "Fn::Split":
            return stringify(self.value(arg[1])).split(stringify(self.value(arg[0])))
        if key == "Fn::FindInMap":
            name, first, second = (stringify(self.value(a)) for a in arg[:3])
            return self.value(self.template["Mappings"][name][first][second])
        if key == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if key == "Fn::Base64":
            import base64
            return base64.b64encode(stringify(self.value(arg)).encode()).decode()
        if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self.truth({key: arg})
        raise Unresolvable(f"{key} is not evaluated here")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return stringify(variables[inner])
            if "." in inner and not inner.startswith("AWS::"):
                logical_id, attribute = inner.split(".", 1)
                return stringify(self.getatt(logical_id, attribute))
            return stringify(self.ref(inner))
        return re.sub(r"\$\{([^}]*)\}", replace, text)

    def ref(self, name: str) -> Any:
        if name in PSEUDO_PARAMETERS:
            return self.pseudo(name)
        if name in self.declared:
            parameters = self.parameters()
            if name not in parameters:
                raise Unresolvable(f"parameter {name} has no value")
            return parameters[name]
        if name in self.resources:
            return self.resource_ref(name)
        raise Unresolvable(f"Ref {name}: no such parameter or resource in {self.path or 'the root stack'}")

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": ACCOUNT, "AWS::Region": self.region, "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX, "AWS::NotificationARNs": [], "AWS::NoValue": NO_VALUE,
        }.get(name) if name not in ("AWS::StackName", "AWS::StackId") else (
            self.stack_name() if name == "AWS::StackName" else self.stack_id())

    # -- physical names and ids
    def generated_name(self, prefix: str, logical_id: str, limit: int, suffix_of: tuple[str, ...] = ()) -> str:
        """CloudFormation's `<stack>-<LogicalId>-<13 random>`, cut to the type's limit."""
        suffix = token("suffix", self.path, logical_id, *suffix_of, length=13, alphabet=UPPER)
        head = f"{prefix}-{logical_id}" if logical_id else prefix
        return f"{head[: limit - len(suffix) - 1]}-{suffix}"

    def name_of(self, logical_id: str) -> str:
        if logical_id not in self._names:
            resource = self.resources[logical_id]
            kind = resource.get("Type", "")
            prop = NAME_PROPERTIES.get(kind)
            explicit = resource.get("Properties", {}).get(prop) if prop else None
            if explicit is not None:
                name = stringify(self.value(explicit))
            else:
                name = self.generated_name(self.stack_name(), logical_id, GENERATED_NAME_LIMITS.get(kind, 128))
                if kind == "AWS::S3::Bucket":
                    name = name.lower()
            self._names[logical_id] = name
        return self._names[logical_id]

    def physical_id(self, logical_id: str, length: int = 10, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
        return token("id", self.path, logical_id, length=length, alphabet=alphabet)

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{PARTITION}:{service}:{self.region if region else ''}:{ACCOUNT}:{resource}"

    def resource_ref(self, logical_id: str) -> Any:
        kind = self.resources[logical_id].get("Type", "")
        if kind in ("AWS::SNS::Topic",):
            return self.arn("sns", self.name_of(logical_id))
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.{URL_SUFFIX}/{ACCOUNT}/{self.name_of(logical_id)}"
        if kind == "AWS::KMS::Key":
            uuid = self.physical_id(logical_id, 32, HEX)
            return f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        if kind == "AWS::SecretsManager::Secret":
            return self.arn("secretsmanager", f"secret:{self.name_of(logical_id)}-{self.physical_id(logical_id, 6)}")
        if kind == "AWS::CloudFormation::Stack" and logical_id in self.model.stacks:
            return self.model.evaluator(logical_id, self.scenario).stack_id()
        if kind in NAME_PROPERTIES:
            return self.name_of(logical_id)
        if kind == "AWS::CloudFront::Distribution" or kind.startswith("AWS::CloudFront::OriginAccess"):
            return "E" + self.physical_id(logical_id, 13, UPPER)
        return self.physical_id(logical_id)

    def getatt(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            raise Unresolvable(f"GetAtt {logical_id}.{attribute}: no such resource in {self.path or 'the root stack'}")
        kind = self.resources[logical_id].get("Type", "")
        name = self.name_of(logical_id) if kind in NAME_PROPERTIES else None
        attributes: dict[str, Callable[[], Any]] = {}
        if kind == "AWS::Lambda::Function":
            attributes = {"Arn": lambda: self.arn("lambda", f"function:{name}")}
        elif kind == "AWS::DynamoDB::Table":
            attributes = {"Arn": lambda: self.arn("dynamodb", f"table/{name}"),
                          "StreamArn": lambda: self.arn("dynamodb", f"table/{name}/stream/2026-01-01T00:00:00.000")}
        elif kind == "AWS::S3::Bucket":
            attributes = {"Arn": lambda: f"arn:{PARTITION}:s3:::{name}", "DomainName": lambda: f"{name}.s3.{URL_SUFFIX}",
                          "RegionalDomainName": lambda: f"{name}.s3.{self.region}.{URL_SUFFIX}"}
        elif kind == "AWS::SQS::Queue":
            attributes = {"Arn": lambda: self.arn("sqs", name), "QueueName": lambda: name,
                          "QueueUrl": lambda: self.resource_ref(logical_id)}
        elif kind == "AWS::SNS::Topic":
            attributes = {"TopicArn": lambda: self.resource_ref(logical_id), "TopicName": lambda: name}
        elif kind == "AWS::KMS::Key":
            attributes = {"Arn": lambda: self.arn("kms", f"key/{self.resource_ref(logical_id)}"),
                          "KeyId": lambda: self.resource_ref(logical_id)}
        elif kind == "AWS::IAM::Role":
            attributes = {"Arn": lambda: f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
                          "RoleId": lambda: "AROA" + self.physical_id(logical_id, 17, UPPER)}
        elif kind == "AWS::Logs::LogGroup":
            attributes = {"Arn": lambda: self.arn("logs", f"log-group:{name}:*")}
        elif kind == "AWS::SecretsManager::Secret":
            attributes = {"Id": lambda: self.resource_ref(logical_id)}
        elif kind == "AWS::ApiGatewayV2::Api":
            attributes = {"ApiId": lambda: self.resource_ref(logical_id),
                          "ApiEndpoint": lambda: f"https://{self.resource_ref(logical_id)}.execute-api.{self.region}.{URL_SUFFIX}"}
        elif kind == "AWS::CloudFront::Distribution":
            attributes = {"Id": lambda: self.resource_ref(logical_id),
                          "DomainName": lambda: "d" + self.physical_id(logical_id, 14) + ".cloudfront.net"}
        elif kind.startswith("AWS::CloudFront::") or kind.startswith("AWS::ApiGatewayV2::"):
            attributes = {attribute: lambda: self.resource_ref(logical_id)} if attribute.endswith("Id") else {}
        elif kind == "AWS::CloudFormation::Stack" and attribute.startswith("Outputs."):
            return self.model.output(logical_id, attribute.split(".", 1)[1], self.scenario)
        if attribute in attributes:
            return attributes[attribute]()
        if self.scenario.long_names:
            return unbounded_marker(f"{logical_id}.{attribute}")
        return f"{logical_id}-{attribute}-" + self.physical_id(f"{logical_id}.{attribute}", 8)


def stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list):
        return ",".join(stringify(v) for v in value)
    raise Unresolvable(f"not a string: {short(value)}")


class Model:
    """The root stack (translated) and its nested stacks, and their evaluators per scenario."""

    def __init__(self, translated: dict, nested: Mapping[str, dict]):
        self.stacks = {"": StackInfo("", translated)}
        for logical_id, resource in resources_of(translated):
            if resource.get("Type") == "AWS::CloudFormation::Stack" and logical_id in nested:
                self.stacks[logical_id] = StackInfo(logical_id, nested[logical_id], parent="")
        self._evaluators: dict[tuple[int, str], Evaluator] = {}
        self._scenarios: tuple[list[Scenario], list[str]] | None = None
        self._keep: list[Scenario] = []  # scenarios cached by id stay alive

    def evaluator(self, path: str, scenario: Scenario) -> Evaluator:
        key = (id(scenario), path)
        if key not in self._evaluators:
            self._keep.append(scenario)
            self._evaluators[key] = Evaluator(self, path, scenario)
        return self._evaluators[key]

    def output(self, stack: str, name: str, scenario: Scenario) -> Any:
        if stack not in self.stacks:
            return token("output", stack, name, length=10)
        outputs = self.stacks[stack].template.get("Outputs") or {}
        if name not in outputs:
            raise Unresolvable(f"{stack} has no output {name}")
        return self.evaluator(stack, scenario).value(outputs[name]["Value"])

    def scenarios(self) -> list[Scenario]:
        if self._scenarios is None:
            self._scenarios = parameter_sets(self.stacks[""].template)
        return self._scenarios[0] or [Scenario("defaults", {})]

    def resources(self, *kinds: str) -> Iterator[tuple[str, str, dict]]:
        """(stack path, logical id, resource) of the given types, in every stack."""
        for path, stack in self.stacks.items():
            for logical_id, resource in resources_of(stack.template):
                if not kinds or resource.get("Type") in kinds:
                    yield path, logical_id, resource

    def functions(self, scenario: Scenario) -> dict[str, tuple[str, str]]:
        """Physical function name -> (stack path, logical id)."""
        out = {}
        for path, logical_id, _ in self.resources("AWS::Lambda::Function"):
            out[self.evaluator(path, scenario).name_of(logical_id)] = (path, logical_id)
        return out


def label_of(path: str, logical_id: str) -> str:
    return f"{path}/{logical_id}" if path else logical_id


def function_of(model: Model, scenario: Scenario, value: Any) -> tuple[str, str] | None:
    """The function a FunctionName / function ARN / invocation URI names."""
    if not isinstance(value, str):
        return None
    match = re.search(r"/functions/(.+)/invocations$", value)
    if match:
        value = match.group(1)
    if ":function:" in value:
        value = value.split(":function:", 1)[1]
    return model.functions(scenario).get(value.split(":")[0])


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM / Lambda permission wildcards: `*` any run of characters, `?` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def across(scenarios: list[Scenario], check: Callable[[Scenario], list[str]]) -> list[str]:
    """A check's problems over every parameter set, each once, with the sets it occurs in
    unless it occurs in all of them."""
    seen: dict[str, list[str]] = {}
    for scenario in scenarios:
        try:
            problems = check(scenario)
        except Unresolvable as error:
            problems = [f"cannot evaluate the template: {error}"]
        for problem in problems:
            seen.setdefault(problem, []).append(scenario.label)
    out = []
    for problem, labels in seen.items():
        if len(labels) == len(scenarios):
            out.append(problem)
        else:
            out.append(f"{problem} [in {len(labels)} of {len(scenarios)} parameter sets, e.g. {labels[0]}]")
    return out


# ---------------------------------------------------------------------------------------------
# What the rules read: sources, API Gateway's view of the APIs, roles

Templates = dict[str, dict]  # nested templates by the logical id of their stack


@dataclass
class SourceFiles:
    """What rules read besides the translated templates."""
    root: Path
    template: dict  # template.yaml as parsed (Fn::ForEach not expanded)
    template_size: int  # bytes of the template CloudFormation is given (packaged, else template.yaml)
    nested_sizes: dict[str, int] = field(default_factory=dict)
    manifest_path: Path | None = None


@dataclass
class Invoked:
    """A function API Gateway invokes, and the source ARN it invokes it with."""
    label: str
    function: tuple[str, str] | None
    function_value: str
    source_arn: str


@dataclass
class Permission:
    label: str
    function: tuple[str, str] | None
    action: str
    principal: str
    source_arn: str | None

    def covers(self, invoked: Invoked) -> bool:
        return (
            invoked.function is not None and self.function == invoked.function
            and self.action.lower() in ("lambda:invokefunction", "lambda:*")
            and self.principal == "apigateway.amazonaws.com"
            and (self.source_arn is None or glob_match(self.source_arn, invoked.source_arn))
        )


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ANY_METHOD = "x-amazon-apigateway-any-method"


def execute_api_arn(ev: Evaluator, api_id: str, rest: str) -> str:
    return f"arn:{PARTITION}:execute-api:{ev.region}:{ACCOUNT}:{api_id}/{rest}"


def lambda_permissions(model: Model, scenario: Scenario) -> list[Permission]:
    out = []
    for path, logical_id, resource in model.resources("AWS::Lambda::Permission"):
        ev = model.evaluator(path, scenario)
        if not ev.exists(logical_id):
            continue
        props = ev.value(resource.get("Properties", {}))
        out.append(Permission(label_of(path, logical_id), function_of(model, scenario, props.get("FunctionName")),
                              str(props.get("Action", "")), str(props.get("Principal", "")), props.get("SourceArn")))
    return out


@dataclass
class ApiView:
    """An API as API Gateway holds it after import: id, protocol, routes, authorizers."""
    path: str
    logical_id: str
    api_id: str
    protocol: str  # HTTP, WEBSOCKET or REST
    body: dict | None
    cors: bool
    routes: list[Route] = field(default_factory=list)


@dataclass
class Route:
    method: str  # GET, ..., ANY; "" for WebSocket route keys and $default
    path: str  # /api/x/{id}, or a route key ($default, $connect, ...)
    authorizers: list[str]
    function_value: Any


def body_authorizers(body: dict) -> dict[str, dict]:
    schemes = (body.get("components") or {}).get("securitySchemes") or body.get("securityDefinitions") or {}
    return {name: scheme.get("x-amazon-apigateway-authorizer") or {} for name, scheme in schemes.items()}


def operation_authorizers(operation: dict, body: dict) -> list[str]:
    known = body_authorizers(body)
    security = operation.get("security", body.get("security")) or []
    return sorted({name for requirement in security for name in requirement if name in known})


def apis(model: Model, scenario: Scenario) -> list[ApiView]:
    out = []
    for path, logical_id, resource in model.resources("AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"):
        ev = model.evaluator(path, scenario)
        if not ev.exists(logical_id):
            continue
        props = resource.get("Properties", {})
        body = ev.value(props["Body"]) if "Body" in props else None
        protocol = "REST" if resource["Type"] == "AWS::ApiGateway::RestApi" else str(props.get("ProtocolType", "HTTP"))
        cors = bool(props.get("CorsConfiguration")) or bool(body and body.get("x-amazon-apigateway-cors"))
        api = ApiView(path, logical_id, str(ev.resource_ref(logical_id)), protocol, body, cors)
        for route_path, item in ((body or {}).get("paths") or {}).items():
            for method, operation in item.items():
                if method in HTTP_METHODS or method == ANY_METHOD:
                    integration = operation.get("x-amazon-apigateway-integration") or {}
                    api.routes.append(Route("ANY" if method == ANY_METHOD else method.upper(), route_path,
                                            operation_authorizers(operation, body), integration.get("uri")))
        out.append(api)
    by_id = {api.api_id: api for api in out}
    for path, logical_id, resource in model.resources("AWS::ApiGatewayV2::Route"):
        ev = model.evaluator(path, scenario)
        if not ev.exists(logical_id):
            continue
        props = ev.value(resource.get("Properties", {}))
        api = by_id.get(props.get("ApiId"))
        if api is None:
            continue
        key = str(props.get("RouteKey", ""))
        method, _, route_path = key.partition(" ") if " " in key else ("", "", key)
        authorizers = [] if props.get("AuthorizationType", "NONE") == "NONE" else [str(props.get("AuthorizerId", "?"))]
        api.routes.append(Route(method, route_path, authorizers, integration_uri(model, path, scenario, props.get("Target"))))
    return out


def integration_uri(model: Model, path: str, scenario: Scenario, target: Any) -> Any:
    """The IntegrationUri of a route's `integrations/<id>` target."""
    if not isinstance(target, str) or not target.startswith("integrations/"):
        return None
    ev = model.evaluator(path, scenario)
    for logical_id, resource in ev.resources.items():
        if resource.get("Type") == "AWS::ApiGatewayV2::Integration" and ev.resource_ref(logical_id) == target.split("/", 1)[1]:
            return ev.value(resource.get("Properties", {}).get("IntegrationUri"))
    return None


def stages(model: Model, scenario: Scenario) -> dict[str, list[tuple[str, str, dict]]]:
    """API id -> [(stack path, logical id, evaluated properties)] of its stages."""
    out: dict[str, list[tuple[str, str, dict]]] = {}
    for path, logical_id, resource in model.resources("AWS::ApiGatewayV2::Stage", "AWS::ApiGateway::Stage"):
        ev = model.evaluator(path, scenario)
        if ev.exists(logical_id):
            props = ev.value(resource.get("Properties", {}))
            out.setdefault(str(props.get("ApiId", props.get("RestApiId"))), []).append((path, logical_id, props))
    return out


def lambda_authorizers(model: Model, scenario: Scenario) -> list[Invoked]:
    out = []
    for api in apis(model, scenario):
        ev = model.evaluator(api.path, scenario)
        for name, authorizer in body_authorizers(api.body or {}).items():
            uri = authorizer.get("authorizerUri")
            if uri:
                authorizer_id = token("authorizer", api.path, api.logical_id, name, length=7)
                out.append(Invoked(f"{label_of(api.path, api.logical_id)} authorizer {name}", function_of(model, scenario, uri),
                                   str(uri), execute_api_arn(ev, api.api_id, f"authorizers/{authorizer_id}")))
    for path, logical_id, resource in model.resources("AWS::ApiGatewayV2::Authorizer", "AWS::ApiGateway::Authorizer"):
        ev = model.evaluator(path, scenario)
        props = ev.value(resource.get("Properties", {})) if ev.exists(logical_id) else {}
        if props.get("AuthorizerUri"):
            api_id = props.get("ApiId", props.get("RestApiId"))
            out.append(Invoked(f"authorizer {label_of(path, logical_id)}", function_of(model, scenario, props["AuthorizerUri"]),
                               str(props["AuthorizerUri"]),
                               execute_api_arn(ev, str(api_id), f"authorizers/{ev.resource_ref(logical_id)}")))
    return out


def route_invocations(model: Model, scenario: Scenario) -> list[Invoked]:
    out = []
    api_stages = stages(model, scenario)
    for api in apis(model, scenario):
        ev = model.evaluator(api.path, scenario)
        for route in api.routes:
            function = function_of(model, scenario, route.function_value)
            if function is None:
                continue
            if route.path.startswith("$"):  # $default, $connect, ...: the route key, whatever the method
                methods = [""]
            elif route.method == "ANY":
                methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
            else:
                methods = [route.method]
            for stage in api_stages.get(api.api_id, []):
                stage_name = stage[2].get("StageName", "$default")
                for method in methods:
                    if route.path.startswith("$"):
                        rest = f"{stage_name}/{route.path}"
                    else:  # as API Gateway presents it: variables filled, no trailing slash (SAM, #665)
                        rest = f"{stage_name}/{method}{concrete_path(route.path).rstrip('/') or '/'}"
                    out.append(Invoked(f"{label_of(api.path, api.logical_id)} route {(method + ' ' + route.path).strip()}",
                                       function, str(route.function_value), execute_api_arn(ev, api.api_id, rest)))
    return out


# ---------------------------------------------------------------------------------------------
# The rules: each returns its problems (an empty list passes)

def rule_authorizer_invocable(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R1: API Gateway may invoke every Lambda authorizer (else every route it guards answers 500)."""
    model = Model(translated, nested)

    def check(scenario: Scenario) -> list[str]:
        permissions = lambda_permissions(model, scenario)
        return [
            f"{invoked.label}: no AWS::Lambda::Permission lets apigateway.amazonaws.com invoke "
            f"{label_of(*invoked.function) if invoked.function else invoked.function_value} from {invoked.source_arn} "
            "(every route it guards would answer 500; SAM adds one only with EnableFunctionDefaultPermissions: true)"
            for invoked in lambda_authorizers(model, scenario)
            if not any(p.covers(invoked) for p in permissions)
        ]
    return across(model.scenarios(), check)


def rule_route_invocable(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R2: API Gateway may invoke every route's function from that route."""
    model = Model(translated, nested)

    def check(scenario: Scenario) -> list[str]:
        permissions = lambda_permissions(model, scenario)
        return [
            f"{invoked.label}: no AWS::Lambda::Permission lets apigateway.amazonaws.com invoke "
            f"{label_of(*invoked.function) if invoked.function else invoked.function_value} from {invoked.source_arn}"
            for invoked in route_invocations(model, scenario)
            if not any(p.covers(invoked) for p in permissions)
        ]
    return across(model.scenarios(), check)


def path_rank(route_path: str, request_path: str) -> tuple[int, ...] | None:
    """How specifically an HTTP API route path matches a request path (None: no match):
    per segment 2 literal, 1 {variable}, 0 the greedy {proxy+}."""
    route, request = route_path.split("/"), request_path.split("/")
    rank = []
    for i, segment in enumerate(route):
        if re.fullmatch(r"\{[^}]+\+\}", segment):
            return tuple(rank + [0]) if i == len(route) - 1 and len(request) > i and "".join(request[i:]) else None
        if i >= len(request):
            return None
        if re.fullmatch(r"\{[^}]+\}", segment):
            if not request[i]:
                return None
            rank.append(1)
        elif segment == request[i]:
            rank.append(2)
        else:
            return None
    return tuple(rank) if len(route) == len(request) else None


def select_route(routes: list[Route], method: str, request_path: str) -> Route | None:
    """HTTP API route selection: the most specific path (literal > {var} > {proxy+}), then an
    explicit method over ANY; else $default; None if nothing matches."""
    best: tuple[tuple[int, ...], int] | None = None
    chosen = None
    for route in routes:
        if route.method not in (method, "ANY") or route.path.startswith("$"):
            continue
        rank = path_rank(route.path, request_path)
        if rank is None:
            continue
        key = (rank, 1 if route.method == method else 0)
        if best is None or key > best:
            best, chosen = key, route
    if chosen is None:
        chosen = next((r for r in routes if r.path == "$default"), None)
    return chosen


def concrete_path(route_path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", re.sub(r"\{[^}]+\+\}", "a/b", route_path))


def rule_no_preflight_through_an_authorizer(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R3: with CORS on, a browser's preflight (OPTIONS, no Authorization header) of any path must
    not select a route behind an authorizer: it would be answered 401 and the call never sent."""
    model = Model(translated, nested)

    def check(scenario: Scenario) -> list[str]:
        problems = []
        for api in apis(model, scenario):
            if api.protocol != "HTTP" or not api.cors:
                continue
            paths = sorted({concrete_path(r.path) for r in api.routes if r.path.startswith("/")}) + ["/rehearsal/no-such-path"]
            reached: dict[str, list[str]] = {}
            for request_path in paths:
                route = select_route(api.routes, "OPTIONS", request_path)
                if route is not None and route.authorizers:
                    selected = f"{route.method} {route.path}".strip() + f" (authorizer {', '.join(route.authorizers)})"
                    reached.setdefault(selected, []).append(request_path)
            for route_label, request_paths in reached.items():
                problems.append(f"{label_of(api.path, api.logical_id)}: OPTIONS preflights of {len(request_paths)} paths "
                                f"(e.g. {', '.join(request_paths[:3])}) select {route_label}: browsers get 401 "
                                "(an OPTIONS /{proxy+} route with Auth: {Authorizer: NONE} would take them)")
        return problems
    return across(model.scenarios(), check)


# IAM: what the managed policies SAM attaches allow (their documented actions, on any resource).
MANAGED_POLICY_ACTIONS = {
    "service-role/AWSLambdaBasicExecutionRole": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    "AWSXrayWriteOnlyAccess": ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                               "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"],
    "service-role/AWSLambdaDynamoDBExecutionRole": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                                                    "dynamodb:ListStreams", "logs:CreateLogGroup", "logs:CreateLogStream",
                                                    "logs:PutLogEvents"],
    "service-role/AWSLambdaSQSQueueExecutionRole": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                                    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


@dataclass
class RolePolicies:
    role: str
    statements: list[dict]
    unknown_managed: list[str]

    def allows(self, action: str, resource: str) -> bool:
        def matches(statement: dict) -> bool:
            if "NotAction" in statement:
                action_ok = not any(glob_match(a, action, True) for a in as_list(statement["NotAction"]))
            else:
                action_ok = any(glob_match(a, action, True) for a in as_list(statement.get("Action")))
            if "NotResource" in statement:
                return action_ok and not any(glob_match(r, resource) for r in as_list(statement["NotResource"]))
            return action_ok and any(glob_match(str(r), resource) for r in as_list(statement.get("Resource")))
        if any(s.get("Effect") == "Deny" and matches(s) for s in self.statements):
            return False
        return any(s.get("Effect") == "Allow" and matches(s) for s in self.statements)


def role_policies(ev: Evaluator, role_logical_id: str) -> RolePolicies:
    """Every statement of a role: inline Policies, AWS::IAM::Policy resources attached to it, and the
    known managed policies (Conditions of statements are assumed met)."""
    props = ev.resources[role_logical_id].get("Properties", {})
    documents = [p.get("PolicyDocument", {}) for p in ev.value(props.get("Policies", []))]
    role_name = ev.name_of(role_logical_id)
    for logical_id, resource in ev.resources.items():
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and ev.exists(logical_id):
            policy = resource.get("Properties", {})
            if role_name in [stringify(r) for r in ev.value(policy.get("Roles", []))]:
                documents.append(ev.value(policy.get("PolicyDocument", {})))
    statements = [s for d in documents for s in as_list(d.get("Statement"))]
    unknown = []
    for arn in ev.value(props.get("ManagedPolicyArns", [])):
        actions = MANAGED_POLICY_ACTIONS.get(str(arn).split(":policy/", 1)[-1])
        if actions is None:
            unknown.append(str(arn))
        else:
            statements.append({"Effect": "Allow", "Action": actions, "Resource": "*"})
    return RolePolicies(label_of(ev.path, role_logical_id), statements, unknown)


def function_role(ev: Evaluator, function_logical_id: str) -> str | None:
    role = ev.resources[function_logical_id].get("Properties", {}).get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        target = role["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".")[0]
    arn = ev.value(role)
    for logical_id, resource in ev.resources.items():
        if resource.get("Type") == "AWS::IAM::Role" and ev.getatt(logical_id, "Arn") == arn:
            return logical_id
    return None


def load_manifest(path: Path | None) -> tuple[dict[str, list[tuple[str, str]]] | None, list[str]]:
    """local/aws-calls.json: {"<binary>": [[action, resource], ...] or [{"action", "resource"}, ...]};
    keys starting with `_` are comments."""
    if path is None or not path.is_file():
        return None, [f"no manifest of AWS calls at {path} (each binary's calls: [action, resource])"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return None, [f"{path}: not JSON: {error}"]
    calls: dict[str, list[tuple[str, str]]] = {}
    problems = []
    for binary, entries in data.items():
        if binary.startswith("_"):
            continue
        calls[binary] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and {"action", "resource"} <= set(entry):
                calls[binary].append((str(entry["action"]), str(entry["resource"])))
            elif isinstance(entry, list) and len(entry) == 2:
                calls[binary].append((str(entry[0]), str(entry[1])))
            else:
                problems.append(f"{path.name}: {binary}: not an [action, resource] pair: {short(entry)}")
    return calls, problems


def only_resource(model: Model, kind: str) -> tuple[str, str]:
    found = [(path, logical_id) for path, logical_id, _ in model.resources(kind)]
    if len(found) != 1:
        raise Unresolvable(f"the manifest's resource needs exactly one {kind}; the stacks hold {len(found)}")
    return found[0]


def manifest_resource_arn(model: Model, scenario: Scenario, resource: str) -> str | None:
    """The ARN a manifest resource names (None: that resource does not exist in this parameter set)."""
    kind, _, rest = resource.partition("/")
    root = model.evaluator("", scenario)
    if kind == "table":
        path, table = only_resource(model, "AWS::DynamoDB::Table")
        arn = model.evaluator(path, scenario).getatt(table, "Arn")
        return arn if not rest else f"{arn}/{rest}"
    if kind == "stream":
        path, table = only_resource(model, "AWS::DynamoDB::Table")
        return model.evaluator(path, scenario).getatt(table, "StreamArn")
    if kind == "bucket":
        path, bucket = only_resource(model, "AWS::S3::Bucket")
        arn = model.evaluator(path, scenario).getatt(bucket, "Arn")
        return arn if not rest else f"{arn}/{rest}"
    if kind == "connections":
        for api in apis(model, scenario):
            if api.protocol == "WEBSOCKET":
                api_stages = stages(model, scenario).get(api.api_id) or []
                if not api_stages:
                    raise Unresolvable(f"WebSocket API {api.logical_id} has no stage")
                stage = api_stages[0][2].get("StageName")
                return execute_api_arn(model.evaluator(api.path, scenario), api.api_id, f"{stage}/{rest}/@connections/AbCdEf0123=")
        raise Unresolvable("no WebSocket API for connections/...")
    if kind == "secret":
        if rest in root.declared:
            value = stringify(root.ref(rest))
            if not value:
                return None  # no secret in this parameter set: nothing is read
            return value if value.startswith("arn:") else root.arn("secretsmanager", f"secret:{value}-AbCdEf")
        if rest in root.resources:
            return root.value({"Ref": rest}) if root.exists(rest) else None
        raise Unresolvable(f"secret/{rest}: no such parameter or resource")
    if kind == "queue":
        if rest not in root.resources:
            raise Unresolvable(f"queue/{rest}: no such resource")
        return root.getatt(rest, "Arn") if root.exists(rest) else None
    raise Unresolvable(f"unknown resource kind {resource!r} (table, table/index/<name>, stream, bucket/<key>, "
                       "connections/<METHOD>, secret/<parameter or resource>, queue/<resource>)")


def binaries(model: Model) -> dict[str, tuple[str, str]]:
    out = {}
    for path, logical_id, resource in model.resources("AWS::Lambda::Function"):
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if binary:
            out[str(binary)] = (path, logical_id)
    return out


def rule_every_call_allowed(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R4: every AWS call a function makes (local/aws-calls.json) is allowed by its role."""
    model = Model(translated, nested)
    manifest, problems = load_manifest(source.manifest_path)
    if manifest is None:
        return problems
    functions = binaries(model)
    problems += [f"manifest: {b}: no function of the template builds this binary" for b in sorted(set(manifest) - set(functions))]
    problems += [f"manifest: {b} ({label_of(*functions[b])}) is not listed (list it, with [] if it calls nothing)"
                 for b in sorted(set(functions) - set(manifest))]

    def check(scenario: Scenario) -> list[str]:
        out = []
        for binary, calls in manifest.items():
            if binary not in functions:
                continue
            path, logical_id = functions[binary]
            ev = model.evaluator(path, scenario)
            if not ev.exists(logical_id):
                continue
            role = function_role(ev, logical_id)
            if role is None:
                out.append(f"{binary}: the role of {label_of(path, logical_id)} is not in the template")
                continue
            policies = role_policies(ev, role)
            for action, resource in calls:
                try:
                    arn = manifest_resource_arn(model, scenario, resource)
                except Unresolvable as error:
                    out.append(f"{binary}: {action} {resource}: {error}")
                    continue
                if arn is not None and not policies.allows(action, arn):
                    unknown = ", ".join(policies.unknown_managed)
                    extra = f" (managed policies not evaluated: {unknown})" if unknown else ""
                    out.append(f"{binary}: {action} on {resource} ({arn}) is not allowed by {policies.role}{extra}")
        return out
    return problems + across(model.scenarios(), check)


PUBLISHERS = {
    "AWS::CloudWatch::Alarm": (("AlarmActions", "OKActions", "InsufficientDataActions"), "cloudwatch.amazonaws.com"),
    "AWS::CloudWatch::CompositeAlarm": (("AlarmActions", "OKActions", "InsufficientDataActions"), "cloudwatch.amazonaws.com"),
}


def service_publishers(model: Model, scenario: Scenario) -> list[tuple[str, str, str]]:
    """(service principal, target ARN, publishing resource) of AWS services that send to topics/queues."""
    out = []
    for path, logical_id, resource in model.resources():
        ev = model.evaluator(path, scenario)
        kind = resource.get("Type")
        if kind not in PUBLISHERS and kind not in ("AWS::S3::Bucket", "AWS::Events::Rule"):
            continue
        if not ev.exists(logical_id):
            continue
        props = ev.value(resource.get("Properties", {}))
        label = label_of(path, logical_id)
        if kind in PUBLISHERS:
            keys, service = PUBLISHERS[kind]
            out += [(service, stringify(a), label) for key in keys for a in as_list(props.get(key))]
        elif kind == "AWS::S3::Bucket":
            notifications = props.get("NotificationConfiguration") or {}
            out += [("s3.amazonaws.com", stringify(c.get("Topic")), label) for c in notifications.get("TopicConfigurations", [])]
            out += [("s3.amazonaws.com", stringify(c.get("Queue")), label) for c in notifications.get("QueueConfigurations", [])]
        else:
            out += [("events.amazonaws.com", stringify(t.get("Arn")), label) for t in props.get("Targets", [])]
    return out


def key_policy_allows(policy: dict, service: str, action: str) -> bool:
    def matches(statement: dict) -> bool:
        principal = statement.get("Principal")
        services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
        anyone = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
        return (service in services or anyone) and any(glob_match(a, action, True) for a in as_list(statement.get("Action")))
    statements = as_list(policy.get("Statement"))
    if any(s.get("Effect") == "Deny" and matches(s) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and matches(s) for s in statements)


def rule_encrypted_topics_and_queues_usable(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R5: an AWS service that publishes to an encrypted SNS topic or SQS queue can use its key:
    never an AWS managed key (alias/aws/*: its policy admits no other service); a customer managed
    key's policy allows that service kms:GenerateDataKey* and kms:Decrypt."""
    model = Model(translated, nested)

    def check(scenario: Scenario) -> list[str]:
        problems = []
        publishers = service_publishers(model, scenario)
        for path, logical_id, resource in model.resources("AWS::SNS::Topic", "AWS::SQS::Queue"):
            ev = model.evaluator(path, scenario)
            if not ev.exists(logical_id) or "KmsMasterKeyId" not in resource.get("Properties", {}):
                continue
            key = stringify(ev.value(resource["Properties"]["KmsMasterKeyId"]))
            target = ev.resource_ref(logical_id) if resource["Type"] == "AWS::SNS::Topic" else ev.getatt(logical_id, "Arn")
            senders = sorted({(service, who) for service, arn, who in publishers if arn == target})
            if not senders:
                continue
            label = label_of(path, logical_id)
            if re.match(r"^(arn:[^:]+:kms:[^:]*:[^:]*:)?alias/aws/", key):
                for service in sorted({service for service, _ in senders}):
                    whose = sorted(who for s, who in senders if s == service)
                    problems.append(f"{label} is encrypted with the AWS managed key {key}, whose policy does not let "
                                    f"{service} use it: what {len(whose)} resources send is never delivered "
                                    f"({', '.join(whose[:3])}{', ...' if len(whose) > 3 else ''})")
                continue
            key_resource = customer_key(ev, key)
            if key_resource is None:
                problems.append(f"{label}: its key {key} is not a key of this stack, so no policy says "
                                f"{', '.join(sorted({s for s, _ in senders}))} may use it")
                continue
            policy = ev.value(ev.resources[key_resource].get("Properties", {}).get("KeyPolicy", {}))
            for service in sorted({service for service, _ in senders}):
                whose = sorted(who for s, who in senders if s == service)
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    if not key_policy_allows(policy, service, action):
                        problems.append(f"{label}: the KeyPolicy of {label_of(path, key_resource)} does not allow {service} "
                                        f"{action} ({len(whose)} resources send to it, e.g. {whose[0]})")
        return problems
    return across(model.scenarios(), check)


def customer_key(ev: Evaluator, key: str) -> str | None:
    for logical_id, resource in ev.resources.items():
        kind = resource.get("Type")
        if kind == "AWS::KMS::Key" and key in (ev.resource_ref(logical_id), ev.getatt(logical_id, "Arn")):
            return logical_id
        if kind == "AWS::KMS::Alias" and key in (ev.name_of(logical_id), ev.arn("kms", ev.name_of(logical_id))):
            target = stringify(ev.value(resource.get("Properties", {}).get("TargetKeyId")))
            return customer_key(ev, target)
    return None


MAX_MEMORY_MB = 3008  # a new account's memory quota (AWS: "reduced concurrency and memory quotas")
MAX_TIMEOUT_S = 900
MAX_API_TIMEOUT_S = 29  # API Gateway's integration timeout is 30 s (29 s for WebSocket APIs)
MAX_ENVIRONMENT_BYTES = 4096
MAX_ROLE_INLINE_POLICY_CHARS = 10240
MAX_TEMPLATE_BYTES = 1024 * 1024
MAX_RESOURCES, MAX_PARAMETERS, MAX_OUTPUTS = 500, 200, 200
MAX_AUTHORIZER_TTL_S = 3600
SQS_RETENTION_S = (60, 1209600)


def api_functions(model: Model, scenario: Scenario) -> dict[tuple[str, str], str]:
    """Functions API Gateway waits for (routes and authorizers) -> one route that shows it."""
    out: dict[tuple[str, str], str] = {}
    for invoked in route_invocations(model, scenario) + lambda_authorizers(model, scenario):
        if invoked.function is not None:
            out.setdefault(invoked.function, invoked.label)
    return out


def authorizer_ttls(model: Model, scenario: Scenario) -> list[tuple[str, int]]:
    out = []
    for api in apis(model, scenario):
        for name, authorizer in body_authorizers(api.body or {}).items():
            if "authorizerResultTtlInSeconds" in authorizer:
                label = f"{label_of(api.path, api.logical_id)} authorizer {name}"
                out.append((label, int(authorizer["authorizerResultTtlInSeconds"])))
    for path, logical_id, resource in model.resources("AWS::ApiGatewayV2::Authorizer", "AWS::ApiGateway::Authorizer"):
        props = model.evaluator(path, scenario).value(resource.get("Properties", {}))
        if "AuthorizerResultTtlInSeconds" in props:
            out.append((f"authorizer {label_of(path, logical_id)}", int(props["AuthorizerResultTtlInSeconds"])))
    return out


def check_settings(model: Model, scenario: Scenario) -> list[str]:
    problems = []
    waited_for = api_functions(model, scenario)
    for path, logical_id, resource in model.resources("AWS::Lambda::Function"):
        ev = model.evaluator(path, scenario)
        if not ev.exists(logical_id):
            continue
        props = ev.value(resource.get("Properties", {}))
        label = label_of(path, logical_id)
        if "ReservedConcurrentExecutions" in props:
            problems.append(f"{label}: ReservedConcurrentExecutions {props['ReservedConcurrentExecutions']}: a new account has 10 "
                            "concurrent executions and Lambda keeps 10 unreserved, so any reservation fails the deploy")
        memory = int(props.get("MemorySize", 128))
        if memory > MAX_MEMORY_MB:
            problems.append(f"{label}: MemorySize {memory} MB is above {MAX_MEMORY_MB} MB, the memory quota of a new account")
        timeout = int(props.get("Timeout", 3))
        if timeout > MAX_TIMEOUT_S:
            problems.append(f"{label}: Timeout {timeout} s is above Lambda's {MAX_TIMEOUT_S} s")
        if (path, logical_id) in waited_for and timeout > MAX_API_TIMEOUT_S:
            problems.append(f"{label}: Timeout {timeout} s, but API Gateway gives up after 30 s "
                            f"({waited_for[(path, logical_id)]}): at most {MAX_API_TIMEOUT_S} s")
    for path, logical_id, resource in model.resources("AWS::Lambda::Version", "AWS::Lambda::Alias"):
        if "ProvisionedConcurrencyConfig" in resource.get("Properties", {}):
            problems.append(f"{label_of(path, logical_id)}: ProvisionedConcurrencyConfig draws on the 10 concurrent "
                            "executions of a new account")
    for label, ttl in authorizer_ttls(model, scenario):
        if not 0 <= ttl <= MAX_AUTHORIZER_TTL_S:
            problems.append(f"{label}: result TTL {ttl} s is outside 0-{MAX_AUTHORIZER_TTL_S} s")
    for path, logical_id, resource in model.resources("AWS::SQS::Queue"):
        props = model.evaluator(path, scenario).value(resource.get("Properties", {}))
        if "MessageRetentionPeriod" in props and not SQS_RETENTION_S[0] <= int(props["MessageRetentionPeriod"]) <= SQS_RETENTION_S[1]:
            problems.append(f"{label_of(path, logical_id)}: MessageRetentionPeriod {props['MessageRetentionPeriod']} is outside "
                            f"{SQS_RETENTION_S[0]}-{SQS_RETENTION_S[1]} s")
    return problems


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def measured(text: str) -> tuple[int, set[str]]:
    """Length without unbounded markers, and the markers' names."""
    return len(UNBOUNDED.sub("", text)), set(UNBOUNDED.findall(text))


def check_sizes(model: Model, worst: list[Scenario]) -> list[str]:
    """Environments and each role's inline policies at their largest over the parameter sets."""
    problems = []
    largest: dict[str, tuple[int, str, str]] = {}
    unbounded: dict[str, set[str]] = {}
    for scenario in worst:
        for path, logical_id, resource in model.resources("AWS::Lambda::Function", "AWS::IAM::Role"):
            ev = model.evaluator(path, scenario)
            if not ev.exists(logical_id):
                continue
            label = label_of(path, logical_id)
            props = resource.get("Properties", {})
            try:
                if resource["Type"] == "AWS::Lambda::Function":
                    variables = ev.value((props.get("Environment") or {}).get("Variables") or {})
                    parts = {k: measured(k + stringify(v)) for k, v in variables.items()}
                    size = sum(n for n, _ in parts.values())
                    biggest = ", ".join(f"{k} {parts[k][0]}" for k in sorted(parts, key=lambda k: -parts[k][0])[:3])
                    names = set().union(*(m for _, m in parts.values())) if parts else set()
                else:
                    documents = [p.get("PolicyDocument", {}) for p in ev.value(props.get("Policies", []))]
                    size, names = measured("".join(json.dumps(d, separators=(",", ":")) for d in documents))
                    biggest = f"{len(documents)} inline policies"
            except Unresolvable as error:
                problems.append(f"{label}: cannot evaluate: {error}")
                continue
            unbounded.setdefault(label, set()).update(names)
            if size > largest.get(label, (-1, "", ""))[0]:
                largest[label] = (size, scenario.label, biggest)
    for path, logical_id, resource in model.resources("AWS::Lambda::Function", "AWS::IAM::Role"):
        label = label_of(path, logical_id)
        if label not in largest:
            continue
        size, scenario_label, biggest = largest[label]
        if resource["Type"] == "AWS::Lambda::Function":
            limit, what = MAX_ENVIRONMENT_BYTES, "environment (keys and values)"
        else:
            limit, what = MAX_ROLE_INLINE_POLICY_CHARS, "inline policies (JSON without whitespace)"
        if size > limit:
            problems.append(f"{label}: {what} reach {size} characters, above {limit}, with {scenario_label} ({biggest})")
    reached: dict[str, list[str]] = {}
    for label, names in unbounded.items():
        for name in names:
            reached.setdefault(name, []).append(label)
    for name, labels in sorted(reached.items()):
        if "." in name:  # an attribute this rehearsal does not know the length of
            problems.append(f"{name} reaches the environment or policies of {', '.join(labels[:3])}: teach this "
                            "rehearsal its longest value (Evaluator.getatt)")
            continue
        problems.append(f"{name} reaches the environment or policies of {', '.join(labels[:3])}"
                        f"{', ...' if len(labels) > 3 else ''}, and nothing bounds its length: give the parameter "
                        "MaxLength, AllowedValues or a bounded AllowedPattern")
    return problems


def rule_quotas(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R6: quotas a new account's deploy meets: concurrency, memory, timeouts, 4 KB environments at
    the longest values the parameters allow, template and policy sizes, TTLs, retention."""
    model = Model(translated, nested)
    problems = []
    for path, stack in model.stacks.items():
        label = path or "root stack"
        template = stack.template
        for section, limit in (("Resources", MAX_RESOURCES), ("Parameters", MAX_PARAMETERS), ("Outputs", MAX_OUTPUTS)):
            count = len(template.get(section) or {})
            if count > limit:
                problems.append(f"{label}: {count} {section}, CloudFormation allows {limit}")
    sizes = {"template": source.template_size, **{f"nested {k}": v for k, v in source.nested_sizes.items()}}
    for label, size in sizes.items():
        if size > MAX_TEMPLATE_BYTES:
            problems.append(f"{label}: {size} bytes, CloudFormation takes at most {MAX_TEMPLATE_BYTES} (from S3)")
    problems += across(model.scenarios(), lambda scenario: check_settings(model, scenario))
    problems += check_sizes(model, worst_case(model.scenarios(), translated))
    problems += check_event_filters(model)
    return problems


MAX_FILTERS_PER_MAPPING = 5
MAX_FILTER_PATTERN_CHARS = 4096


def check_event_filters(model: "Model") -> list[str]:
    """Lambda refuses an event source mapping with more filters than its quota (5 by default), or a
    pattern longer than 4096 characters."""
    problems = []
    for path, stack in model.stacks.items():
        for logical_id, resource in (stack.template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
                continue
            filters = ((resource.get("Properties") or {}).get("FilterCriteria") or {}).get("Filters") or []
            label = label_of(path, logical_id)
            if len(filters) > MAX_FILTERS_PER_MAPPING:
                problems.append(f"{label}: {len(filters)} filters, Lambda allows {MAX_FILTERS_PER_MAPPING} per event source mapping")
            for f in filters:
                pattern = f.get("Pattern") if isinstance(f, dict) else None
                if isinstance(pattern, str) and len(pattern) > MAX_FILTER_PATTERN_CHARS:
                    problems.append(f"{label}: a filter pattern of {len(pattern)} characters (at most {MAX_FILTER_PATTERN_CHARS})")
    return problems


# Explicit names: where each type keeps it, and its service's rule.
def bucket_name_problems(name: str) -> list[str]:
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"is {len(name)} characters (3-63)")
    if not re.fullmatch(r"[a-z0-9.-]*", name):
        problems.append("has characters other than lowercase letters, digits, hyphens and dots")
    if not re.fullmatch(r"[a-z0-9].*[a-z0-9]|[a-z0-9]", name, flags=re.IGNORECASE | re.DOTALL):
        problems.append("does not begin and end with a letter or digit")
    if ".." in name:
        problems.append("has two adjacent dots")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        problems.append("looks like an IP address")
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            problems.append(f"begins with the reserved {prefix}")
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            problems.append(f"ends with the reserved {suffix}")
    return problems


def pattern_rule(limit: int, pattern: str | None = None, what: str = "", minimum: int = 1) -> Callable[[str], list[str]]:
    def check(name: str) -> list[str]:
        problems = []
        if not minimum <= len(name) <= limit:
            problems.append(f"is {len(name)} characters ({minimum}-{limit})")
        if pattern and not re.fullmatch(pattern, name):
            problems.append(f"has characters outside {what or pattern}")
        return problems
    return check


def kms_alias_problems(name: str) -> list[str]:
    problems = pattern_rule(256, r"alias/[a-zA-Z0-9/_-]+", "alias/[a-zA-Z0-9/_-]+")(name)
    return problems + (["uses the reserved alias/aws/ prefix"] if name.startswith("alias/aws/") else [])


def api_name_node(props: dict) -> Any:
    return props.get("Name", ((props.get("Body") or {}).get("info") or {}).get("title"))


NAME_RULES: dict[str, tuple[str, Callable[[dict], Any], Callable[[str], list[str]]]] = {
    "AWS::S3::Bucket": ("BucketName", lambda p: p.get("BucketName"), bucket_name_problems),
    "AWS::CloudFront::OriginAccessControl": ("Name", lambda p: (p.get("OriginAccessControlConfig") or {}).get("Name"),
                                             pattern_rule(64)),
    "AWS::CloudFront::ResponseHeadersPolicy": ("Name", lambda p: (p.get("ResponseHeadersPolicyConfig") or {}).get("Name"),
                                               pattern_rule(128, r"[A-Za-z0-9_-]+")),
    "AWS::CloudFront::CachePolicy": ("Name", lambda p: (p.get("CachePolicyConfig") or {}).get("Name"),
                                     pattern_rule(128, r"[A-Za-z0-9_-]+")),
    "AWS::CloudFront::OriginRequestPolicy": ("Name", lambda p: (p.get("OriginRequestPolicyConfig") or {}).get("Name"),
                                             pattern_rule(128, r"[A-Za-z0-9_-]+")),
    "AWS::Logs::LogGroup": ("LogGroupName", lambda p: p.get("LogGroupName"), pattern_rule(512, r"[.\-_/#A-Za-z0-9]+")),
    "AWS::ApiGatewayV2::Api": ("Name", api_name_node, pattern_rule(128)),
    "AWS::IAM::Role": ("RoleName", lambda p: p.get("RoleName"), pattern_rule(64, r"[\w+=,.@-]+")),
    "AWS::Lambda::Function": ("FunctionName", lambda p: p.get("FunctionName"), pattern_rule(64, r"[a-zA-Z0-9_-]+")),
    "AWS::SQS::Queue": ("QueueName", lambda p: p.get("QueueName"), pattern_rule(80, r"[A-Za-z0-9_-]+(\.fifo)?")),
    "AWS::SNS::Topic": ("TopicName", lambda p: p.get("TopicName"), pattern_rule(256, r"[A-Za-z0-9_-]+(\.fifo)?")),
    "AWS::SecretsManager::Secret": ("Name", lambda p: p.get("Name"), pattern_rule(512)),
    "AWS::KMS::Alias": ("AliasName", lambda p: p.get("AliasName"), kms_alias_problems),
    "AWS::DynamoDB::Table": ("TableName", lambda p: p.get("TableName"), pattern_rule(255, r"[a-zA-Z0-9_.-]+", minimum=3)),
    "AWS::CloudWatch::Alarm": ("AlarmName", lambda p: p.get("AlarmName"), pattern_rule(255)),
}


def check_names(model: Model, scenario: Scenario) -> list[tuple[str, str]]:
    """((resource, problem), message) of explicit names that break their service's rule."""
    out = []
    for path, logical_id, resource in model.resources(*NAME_RULES):
        ev = model.evaluator(path, scenario)
        prop, extract, rule = NAME_RULES[resource["Type"]]
        node = extract(resource.get("Properties", {}))
        if node is None or not ev.exists(logical_id):
            continue
        label = f"{label_of(path, logical_id)} {prop}"
        name = stringify(ev.value(node))
        for unbounded in UNBOUNDED.findall(name):
            out.append(((label, unbounded), f"{label} takes {unbounded}, whose length nothing bounds"))
        problems = rule(name)
        if problems:
            kinds = tuple(re.sub(r"\d+ characters", "N characters", p) for p in problems)
            out.append(((label, *kinds), f"{label} {'; '.join(problems)}, with stack name {short(scenario.stack_name, 24)!r} "
                                         f"({len(scenario.stack_name)} characters): {short(name, 90)}"))
    return out


def rule_naming(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R7: every explicit name satisfies its service's rule whatever the stack's name (CloudFormation
    allows [a-zA-Z][-a-zA-Z0-9]*, up to 128 characters) and the parameters."""
    model = Model(translated, nested)
    scenarios = [Scenario(f"{s.label}", s.parameters, stack_name=name, long_names=True)
                 for name in WORST_STACK_NAMES for s in model.scenarios()]
    scenarios += worst_case(model.scenarios(), translated)
    found: dict[tuple[str, str], str] = {}
    for scenario in scenarios:
        try:
            for key, message in check_names(model, scenario):
                found.setdefault(key, message)
        except Unresolvable as error:
            found.setdefault(("evaluate", str(error)), f"cannot evaluate the template: {error}")
    return list(found.values())


RETAINED_KINDS = ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable", "AWS::S3::Bucket")


def rule_data_survives(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R8: tables and buckets outlive a stack deletion and a replacing update."""
    model = Model(translated, nested)
    problems = []
    for path, logical_id, resource in model.resources(*RETAINED_KINDS):
        label = label_of(path, logical_id)
        if resource.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
            problems.append(f"{label}: DeletionPolicy is {resource.get('DeletionPolicy', 'Delete (unset)')}: "
                            "deleting the stack deletes its data (Retain, or RetainExceptOnCreate)")
        if resource.get("UpdateReplacePolicy") != "Retain":
            problems.append(f"{label}: UpdateReplacePolicy is {resource.get('UpdateReplacePolicy', 'Delete (unset)')}: "
                            "an update that replaces it deletes the old one's data (Retain)")
    return problems


def references(node: Any) -> set[str]:
    """Logical ids a node refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            found.add(node["Ref"])
        elif set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        elif set(node) == {"Fn::Sub"}:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def depends_on(template: dict, start: str, goal: str) -> bool:
    """Whether CloudFormation creates `goal` before `start` (DependsOn and references, transitively)."""
    resources = dict(resources_of(template))
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current == goal and current != start:
            return True
        if current in seen or current not in resources:
            continue
        seen.add(current)
        resource = resources[current]
        todo += as_list(resource.get("DependsOn")) + sorted(references(resource.get("Properties", {})) & set(resources))
    return False


def rule_access_logs(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R9: every API stage writes access logs; WebSocket and REST stages log through the account's
    CloudWatch role, so an AWS::ApiGateway::Account sets it before their stack is created."""
    model = Model(translated, nested)
    scenario = model.scenarios()[0]
    protocols = {api.api_id: api.protocol for api in apis(model, scenario)}
    problems, need_account = [], []
    for api_id, entries in stages(model, scenario).items():
        for path, logical_id, props in entries:
            settings = props.get("AccessLogSettings") or props.get("AccessLogSetting") or {}
            protocol = protocols.get(api_id, "?")
            label = f"{label_of(path, logical_id)} ({protocol} stage {props.get('StageName')})"
            if not settings.get("DestinationArn"):
                problems.append(f"{label} has no AccessLogSettings.DestinationArn: what API Gateway answers itself "
                                "(authorizer refusals, throttling, integration failures) leaves no trace")
            elif protocol in ("WEBSOCKET", "REST"):
                need_account.append((path, logical_id, label))
    accounts = []
    for path, logical_id, resource in model.resources("AWS::ApiGateway::Account"):
        if resource.get("Properties", {}).get("CloudWatchRoleArn"):
            accounts.append((path, logical_id))
    for path, logical_id, label in need_account:
        if not accounts:
            problems.append(f"{label} logs through the account's CloudWatch role, but no AWS::ApiGateway::Account with "
                            "CloudWatchRoleArn sets it (the stage fails: CloudWatch Logs role ARN must be set in account settings)")
            continue
        if not any(stage_after_account(model, (path, logical_id), account) for account in accounts):
            where = f"the nested stack {path}" if path else logical_id
            problems.append(f"{label}: {where} does not depend on {', '.join(label_of(*a) for a in accounts)}: "
                            "CloudFormation may create the stage before the account's CloudWatch role is set")
    return problems


def stage_after_account(model: Model, stage: tuple[str, str], account: tuple[str, str]) -> bool:
    if stage[0] == account[0]:
        return depends_on(model.stacks[stage[0]].template, stage[1], account[1])

    def anchor(path: str, logical_id: str) -> str:
        return logical_id if not path else path
    return depends_on(model.stacks[""].template, anchor(*stage), anchor(*account))


SECRET_REFERENCE = re.compile(r"\{\{resolve:(secretsmanager|ssm-secure):")


def secret_uses(node: Any, no_echo: set[str]) -> set[str]:
    found: set[str] = set()
    if isinstance(node, str):
        found |= {f"a {{{{resolve:{m}:...}}}} dynamic reference" for m in SECRET_REFERENCE.findall(node)}
    elif isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in no_echo:
            found.add(f"the NoEcho parameter {node['Ref']}")
        if set(node) == {"Fn::Sub"}:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {f"the NoEcho parameter {m}" for m in re.findall(r"\$\{([^!}][^}]*)\}", text) if m in no_echo}
        for value in node.values():
            found |= secret_uses(value, no_echo)
    elif isinstance(node, list):
        for item in node:
            found |= secret_uses(item, no_echo)
    return found


def rule_no_secret_in_environment(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R10: no secret in a function's environment: it is plaintext to lambda:GetFunctionConfiguration
    and a dynamic reference is resolved again only when the function changes, never on rotation."""
    model = Model(translated, nested)
    problems = []
    for path, logical_id, resource in model.resources("AWS::Lambda::Function"):
        template = model.stacks[path].template
        no_echo = {n for n, d in (template.get("Parameters") or {}).items() if str(d.get("NoEcho", "")).lower() == "true"}
        variables = (resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {}
        for key, value in variables.items():
            for use in sorted(secret_uses(value, no_echo)):
                problems.append(f"{label_of(path, logical_id)}: {key} holds {use}")
    return problems


LANGUAGE_EXTENSION_COMMANDS = ("build", "package", "deploy", "sync", "validate",
                               "local_invoke", "local_start_api", "local_start_lambda")


def rule_language_extensions(translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    """R11: with AWS::LanguageExtensions in the template, samconfig.toml turns on SAM CLI's
    `language_extensions` for every command that reads the template (aws-sam-cli #5647)."""
    if not uses_language_extensions(source.template):
        return []
    environment = samconfig.get("default") or {}
    everywhere = ((environment.get("global") or {}).get("parameters") or {}).get("language_extensions") is True
    problems = []
    for command in LANGUAGE_EXTENSION_COMMANDS:
        section = (environment.get(command) or {}).get("parameters") or {}
        if section.get("language_extensions") is not True and not everywhere:
            problems.append(f"samconfig.toml [default.{command}.parameters] does not set language_extensions = true: "
                            f"`sam {command.replace('_', ' ').replace('start ', 'start-')}` does not expand Fn::ForEach "
                            "(build and package crash with 'list' object has no attribute 'get')")
    return problems


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    check: Callable[[dict, Templates, SourceFiles, dict], list[str]]


RULES = (
    Rule("R1", "authorizer-invocable", rule_authorizer_invocable),
    Rule("R2", "route-invocable", rule_route_invocable),
    Rule("R3", "no-preflight-through-an-authorizer", rule_no_preflight_through_an_authorizer),
    Rule("R4", "every-call-allowed", rule_every_call_allowed),
    Rule("R5", "encrypted-topics-and-queues-usable", rule_encrypted_topics_and_queues_usable),
    Rule("R6", "quotas", rule_quotas),
    Rule("R7", "naming", rule_naming),
    Rule("R8", "data-survives", rule_data_survives),
    Rule("R9", "access-logs", rule_access_logs),
    Rule("R10", "no-secret-in-environment", rule_no_secret_in_environment),
    Rule("R11", "language-extensions", rule_language_extensions),
)


def run_rule(rule: Rule, translated: dict, nested: Templates, source: SourceFiles, samconfig: dict) -> list[str]:
    try:
        return rule.check(translated, nested, source, samconfig)
    except Exception as error:  # a rule that cannot run fails, with where it broke
        where = traceback.extract_tb(error.__traceback__)[-1]
        return [f"the rule itself failed: {type(error).__name__}: {error} (line {where.lineno}, {where.name})"]


def run_rules(translated: dict, nested: dict[str, dict], source: SourceFiles, samconfig: dict) -> dict[str, list[str]]:
    results = {}
    for rule in RULES:
        problems = run_rule(rule, translated, nested, source, samconfig)
        report(f"{rule.id} {rule.name}", problems)
        results[rule.id] = problems
    return results


# ---------------------------------------------------------------------------------------------
# Steps 1-2: sam build with a stand-in cargo, sam package into moto

STAND_IN_CARGO = '''#!{python}
"""Stand-in for cargo in the deploy rehearsal: what aws_lambda_builders' rust_cargo workflow calls."""
import json, os, sys
TARGET = {target!r}
args = sys.argv[1:]
if args[:1] == ["metadata"]:
    print(json.dumps({{"packages": [], "target_directory": TARGET, "workspace_root": os.getcwd(), "version": 1}}))
elif args[:2] == ["lambda", "build"] and "--bin" in args:
    binary = args[args.index("--bin") + 1]
    os.makedirs(os.path.join(TARGET, "lambda", binary), exist_ok=True)
    path = os.path.join(TARGET, "lambda", binary, "bootstrap")
    with open(path, "w") as out:
        out.write("#!/bin/sh\\n# stand-in bootstrap of " + binary + "\\n")
    os.chmod(path, 0o755)
else:
    sys.exit("stand-in cargo: unexpected call: cargo " + " ".join(args))
'''


def write_executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def sam_executable() -> Path:
    return Path(sys.executable).parent / "sam"


def sam_environment(work: Path, endpoint: str = DEAD_ENDPOINT, extra_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)  # the stand-in writes only where its cargo metadata says
    env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_S3"] = endpoint
    env["HOME"] = str(work / "home")  # SAM CLI's metadata and caches stay in the temp dir
    (work / "home").mkdir(exist_ok=True)
    path = [str(extra_path)] if extra_path else []
    env["PATH"] = os.pathsep.join(path + [str(sam_executable().parent), os.environ.get("PATH", "")])
    return env


def run_sam(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(sam_executable()), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def samconfig_of(root: Path) -> dict:
    path = root / "samconfig.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def section_of(samconfig: dict, command: str) -> dict:
    environment = samconfig.get("default") or {}
    merged = dict((environment.get("global") or {}).get("parameters") or {})
    merged.update((environment.get(command) or {}).get("parameters") or {})
    return merged


def explain_sam_failure(command: str, output: str, root: Path) -> list[str]:
    """Why `sam <command>` failed, the known cause first."""
    reasons = []
    if "'list' object has no attribute 'get'" in output:
        template = load_yaml(root / "template.yaml")
        section = section_of(samconfig_of(root), command)
        if uses_language_extensions(template) and section.get("language_extensions") is not True:
            reasons.append(f"sam {command} crashed with AttributeError: 'list' object has no attribute 'get'. Cause: template.yaml's "
                           "Transform includes AWS::LanguageExtensions (Fn::ForEach), and samconfig.toml "
                           f"[default.{command}.parameters] does not set language_extensions = true, so SAM CLI hands the "
                           "Fn::ForEach::... entry (a list) to the SAM translator as a resource (aws-sam-cli #5647)")
        else:
            reasons.append(f"sam {command} crashed with 'list' object has no attribute 'get': a Fn::ForEach reached SAM's "
                           "translator unexpanded although language_extensions is on (see the output below)")
    tail = [line for line in output.strip().splitlines() if line.strip()][-12:]
    return reasons + [f"sam {command} output (last lines): " + " | ".join(line.strip() for line in tail)]


def step_build(root: Path, work: Path) -> Path | None:
    """`sam build` as CI would run it, with the Rust compile replaced: the built template, or None."""
    start = time.monotonic()
    bin_dir, target = work / "stand-in-bin", work / "cargo-target"
    bin_dir.mkdir()
    write_executable(bin_dir / "cargo", STAND_IN_CARGO.format(python=sys.executable, target=str(target)))
    write_executable(bin_dir / "cargo-lambda", "#!/bin/sh\necho 'cargo-lambda 1.9.2 (deploy rehearsal stand-in)'\n")
    build_dir = work / "build" / "artifacts"
    # Run beside, not in, the repository: with `cached = true` SAM CLI creates .aws-sam/deps in its
    # cwd. Given --template-file, it reads samconfig.toml beside the template (the repository's).
    args = ["build", "--template-file", str(root / "template.yaml"),
            "--build-dir", str(build_dir), "--cache-dir", str(work / "build" / "cache")]
    if not sam_executable().exists():
        failed("build", [f"no SAM CLI at {sam_executable()} (run this script with the SAM CLI venv's python)"])
        return None
    (work / "build").mkdir()
    try:
        result = run_sam(args, work / "build", sam_environment(work, extra_path=bin_dir))
    except subprocess.TimeoutExpired:
        failed(f"build ({elapsed(start)})", ["sam build did not finish in 15 minutes"])
        return None
    built = build_dir / "template.yaml"
    if result.returncode != 0 or not built.is_file():
        failed(f"build ({elapsed(start)})", explain_sam_failure("build", result.stdout + result.stderr, root))
        return None
    template = load_yaml(built)
    functions = [k for k, r in resources_of(expand_foreach(template)) if r.get("Type") == "AWS::Serverless::Function"]
    missing = [k for k in functions if not (build_dir / k / "bootstrap").is_file()]
    settings = section_of(samconfig_of(root), "build")
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items() if k != "parameter_overrides")
    report(f"build ({elapsed(start)})", [f"{k}: no bootstrap in the build output" for k in missing],
           f"sam build built {len(functions)} functions with the stand-in cargo (samconfig.toml [default.build.parameters]: {shown})")
    return None if missing else built


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_s3(work: Path) -> Iterator[str]:
    """A moto server on a free loopback port (stopped on exit): its endpoint URL."""
    port = free_port()
    log = open(work / "moto.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=work, env=dict(os.environ, HOME=str(work)))
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {(work / 'moto.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def s3_client(endpoint: str) -> Any:
    import boto3
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@dataclass
class Packaged:
    template: dict
    size: int
    nested: dict[str, dict]
    nested_sizes: dict[str, int]


def step_package(root: Path, built: Path, work: Path) -> Packaged | None:
    """`sam package` of the built template into a moto bucket; the nested templates read back."""
    start = time.monotonic()
    output = work / "packaged.yaml"
    import importlib.util
    if importlib.util.find_spec("moto") is None:
        failed("package", [f"moto is not installed beside SAM CLI: {sys.executable} -m pip install 'moto[server]==5.2.6'"])
        return None
    try:
        with moto_s3(work) as endpoint:
            s3 = s3_client(endpoint)
            s3.create_bucket(Bucket=PACKAGE_BUCKET)
            args = ["package", "--template-file", str(built), "--s3-bucket", PACKAGE_BUCKET, "--output-template-file", str(output)]
            if (root / "samconfig.toml").is_file():
                # SAM CLI reads samconfig.toml beside --template-file (the temp build dir here), not the cwd;
                # `sam deploy` after `sam build` reads the repository's, as this does.
                args += ["--config-file", str(root / "samconfig.toml")]
            result = run_sam(args, root, sam_environment(work, endpoint))
            if result.returncode != 0 or not output.is_file():
                failed(f"package ({elapsed(start)})", explain_sam_failure("package", result.stdout + result.stderr, root))
                return None
            template = load_yaml(output)
            problems, nested, sizes = [], {}, {}
            for logical_id, resource in resources_of(expand_foreach(template)):
                props = resource.get("Properties", {})
                if resource.get("Type") == "AWS::Serverless::Function":
                    code = str(props.get("CodeUri", ""))
                    if not code.startswith(f"s3://{PACKAGE_BUCKET}/"):
                        problems.append(f"{logical_id}: CodeUri {code} is not in the package bucket")
                    else:
                        s3.head_object(Bucket=PACKAGE_BUCKET, Key=code.split("/", 3)[3])
                elif resource.get("Type") == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
                    bucket, _, key = urlparse(props["Location"]).path.lstrip("/").partition("/")
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    nested[logical_id], sizes[logical_id] = yaml_parse(body.decode("utf-8")), len(body)
    except Exception as error:  # moto, boto3 or SAM CLI broke: say which
        failed(f"package ({elapsed(start)})", [f"{type(error).__name__}: {error}"])
        return None
    report(f"package ({elapsed(start)})", problems,
           f"sam package uploaded the functions and {len(nested)} nested templates ({', '.join(nested)}) to a moto S3; "
           f"packaged template {output.stat().st_size} bytes")
    return Packaged(template, output.stat().st_size, nested, sizes) if not problems else None


# ---------------------------------------------------------------------------------------------
# Step 7: README deploy commands, rehearsed with recording shims

SHIM = r'''#!{python}
"""Deploy rehearsal shim: records its argv, prints something plausible, never calls anything."""
import json, os, secrets, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["REHEARSAL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": [name] + args, "block": os.environ.get("REHEARSAL_BLOCK", "?")}}) + "\n")
if not sys.stdin.isatty() and name in ("jq",):
    sys.stdin.read()
arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:forum/rehearsal-AbCdEf"
if name == "openssl" and args[:1] == ["rand"]:
    count = int(args[-1])
    print(secrets.token_hex(count) if "-hex" in args else secrets.token_urlsafe(count))
elif name == "curl":
    key = {{"kty": "RSA", "kid": "rehearsal", "alg": "RS256", "use": "sig", "n": "0vx7agoebGcQSuuPiLJXZpt", "e": "AQAB"}}
    print(json.dumps({{"keys": [key]}}))
elif name == "jq":
    print("rehearsal-value")
elif name == "aws":
    if "--query" in args and "text" in args:
        print(arn if "arn" in " ".join(args).lower() else "rehearsal-value")
    else:
        print(json.dumps({{"ARN": arn, "Name": "forum/rehearsal", "VersionId": "0b1c2d3e-rehearsal"}}))
elif name == "sam" and args[:2] == ["list", "stack-outputs"]:
    print(json.dumps([{{"OutputKey": "MediaBucketName", "OutputValue": "forum-media-123456789012-0a1b2c3d"}}]))
'''
SHIMMED = ("sam", "aws", "curl", "openssl", "jq")
TEXT_TOOLS = ("cat", "grep", "sed", "awk", "tr", "head", "tail", "cut", "sort", "uniq", "wc", "date", "basename",
              "dirname", "base64", "tee", "true", "false", "sleep", "mkdir", "touch", "printf", "env")
PRELUDE = 'command_not_found_handle() { echo "$1" >> "$REHEARSAL_UNKNOWN"; echo "rehearsal: $1 is not rehearsed" >&2; return 127; }\n'


def rehearsed_blocks(markdown: str) -> list[tuple[int, str]]:
    """(line number, text) of each ```sh block that follows a `<!-- rehearsed -->` line."""
    lines = markdown.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != "<!-- rehearsed -->":
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not re.fullmatch(r"```(sh|bash|shell)\s*", lines[j].strip()):
            blocks.append((i + 1, ""))  # a marker without its block: reported
            continue
        end = next((k for k in range(j + 1, len(lines)) if lines[k].strip() == "```"), len(lines))
        blocks.append((j + 2, "\n".join(lines[j + 1:end]) + "\n"))
    return blocks


def run_blocks(blocks: list[tuple[int, str]], work: Path) -> tuple[list[dict], list[str]]:
    """Each block run by bash with only the shims and a few text tools: the recorded commands."""
    shims, tools = work / "shims", work / "tools"
    shims.mkdir()
    tools.mkdir()
    for name in SHIMMED:
        write_executable(shims / name, SHIM.format(python=sys.executable))
    for name in TEXT_TOOLS:
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    log, unknown = work / "commands.jsonl", work / "unknown.txt"
    problems = []
    for line, text in blocks:
        if not text:
            problems.append(f"line {line}: <!-- rehearsed --> is not followed by a ```sh block")
            continue
        script = work / f"block-{line}.sh"
        script.write_text(PRELUDE + text, encoding="utf-8")
        env = {"PATH": f"{shims}:{tools}", "HOME": str(work), "REHEARSAL_LOG": str(log),
               "REHEARSAL_UNKNOWN": str(unknown), "REHEARSAL_BLOCK": str(line), "LANG": "C.UTF-8"}
        run_dir = work / f"cwd-{line}"
        run_dir.mkdir()
        # Not -e: every command of the block is recorded, as a reader would run them all.
        result = subprocess.run(["/bin/bash", "--noprofile", "--norc", "-o", "pipefail", str(script)],
                                cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            problems.append(f"block at line {line}: bash exited {result.returncode}: {short(result.stderr.strip(), 200)}")
    if unknown.exists():
        problems += [f"`{name}` is run by a rehearsed block but is not rehearsed (only {', '.join(SHIMMED)} and text tools)"
                     for name in sorted(set(unknown.read_text().split()))]
    records = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    return records, problems


def parse_sam(args: list[str]) -> tuple[str, Any]:
    """`sam <args>` parsed by SAM CLI's own click commands, never invoked: (command path, context)."""
    import click
    from samcli.cli.main import cli
    context = cli.make_context("sam", list(args))
    group, parent, rest, names = cli, context, context.protected_args + context.args, []
    while True:
        name, command, rest = group.resolve_command(parent, rest)
        names.append(name)
        sub = command.make_context(name, rest, parent=parent)
        if isinstance(command, click.MultiCommand):
            group, parent, rest = command, sub, sub.protected_args + sub.args
            continue
        return " ".join(names), sub


def override_tokens(args: list[str]) -> list[str]:
    """The shell words after --parameter-overrides, up to the next option."""
    if "--parameter-overrides" not in args:
        return []
    tokens = []
    for word in args[args.index("--parameter-overrides") + 1:]:
        if word.startswith("--"):
            break
        tokens.append(word)
    return tokens


def cut_values(tokens: list[str]) -> list[str]:
    """Values SAM CLI's --parameter-overrides parser keeps only part of."""
    from samcli.cli.types import CfnParameterOverridesType
    problems = []
    for word in tokens:
        key, sep, given = word.partition("=")
        if not sep or key.startswith("ParameterKey") or not re.fullmatch(r"[A-Za-z0-9]+", key):
            continue
        expected = given[1:-1] if len(given) >= 2 and given[0] == given[-1] and given[0] in "\"'" else given
        try:
            parsed = CfnParameterOverridesType().convert(word, None, None).get(key)
        except Exception as error:  # click.BadParameter and friends
            problems.append(f"{key}: SAM CLI refuses its value: {error}")
            continue
        if parsed != expected:
            problems.append(f"SAM CLI cuts {key}: the shell passes {len(expected)} characters ({short(expected, 40)!s}), "
                            f"SAM CLI keeps {short(parsed, 40)!r}")
    return problems


def check_sam_record(args: list[str], parse_dir: Path, template: dict, guided_before: bool) -> tuple[list[str], bool]:
    """Problems of one recorded `sam` command, and whether it was a guided deploy."""
    import click
    problems = cut_values(override_tokens(args))
    cwd = os.getcwd()
    os.chdir(parse_dir)  # as run beside template.yaml and samconfig.toml
    try:
        name, context = parse_sam(args)
    except click.exceptions.Exit:
        return problems, False
    except click.ClickException as error:
        return problems + [f"SAM CLI refuses it: {error.format_message()}"], False
    finally:
        os.chdir(cwd)
    overrides = context.params.get("parameter_overrides")
    guided = name == "deploy" and bool(context.params.get("guided"))
    if overrides is not None and (override_tokens(args) or overrides):
        shown = ", ".join(f"{k}={short(v, 40)!r}" for k, v in overrides.items())
        print(f"    sam {name}: parameters as SAM CLI parses them: {shown or 'none'}")
        full_set = name in ("deploy", "sync") and not guided and not guided_before
        problems += parameter_problems(template, {k: str(v) for k, v in overrides.items()},
                                       require_all=full_set, check_rules=full_set)
    return problems, guided


AWS_GLOBAL_OPTIONS = {"region", "profile", "output", "query", "endpoint-url", "no-cli-pager", "cli-pager", "debug",
                      "no-verify-ssl", "no-paginate", "color", "cli-input-json", "cli-input-yaml", "generate-cli-skeleton",
                      "cli-read-timeout", "cli-connect-timeout", "ca-bundle", "no-sign-request", "cli-binary-format",
                      "cli-auto-prompt", "no-cli-auto-prompt", "starting-token", "page-size", "max-items"}
AWS_S3_COMMANDS = {
    "cp": {"recursive", "dryrun", "quiet", "include", "exclude", "acl", "content-type", "cache-control", "metadata",
           "sse", "storage-class", "only-show-errors", "no-progress", "follow-symlinks", "no-follow-symlinks",
           "content-disposition", "content-encoding", "expires", "metadata-directive", "request-payer"},
    "mv": {"recursive", "dryrun", "quiet", "include", "exclude", "only-show-errors", "no-progress", "request-payer"},
    "rm": {"recursive", "dryrun", "quiet", "include", "exclude", "only-show-errors", "request-payer"},
    "sync": {"delete", "dryrun", "quiet", "include", "exclude", "acl", "exact-timestamps", "size-only", "content-type",
             "cache-control", "only-show-errors", "no-progress", "follow-symlinks", "no-follow-symlinks", "metadata",
             "sse", "storage-class", "request-payer"},
    "ls": {"recursive", "human-readable", "summarize", "request-payer"},
    "mb": set(), "rb": {"force"}, "presign": {"expires-in"}, "website": {"index-document", "error-document"},
}
AWS_CLI_SERVICES = {"s3api": "s3", "configservice": "config"}


def check_aws_record(args: list[str]) -> list[str]:
    """`aws <service> <operation> --option ...` against botocore's models (kebab-case names)."""
    import botocore.session
    from botocore import xform_name
    positional = [a for i, a in enumerate(args) if not a.startswith("--") and not (i and args[i - 1].startswith("--"))]
    options = [a[2:].split("=")[0] for a in args if a.startswith("--")]
    if len(positional) < 2:
        return [f"aws {' '.join(args)}: no service and operation"]
    service, operation = positional[0], positional[1]
    if service == "s3" and operation in AWS_S3_COMMANDS:
        allowed = AWS_S3_COMMANDS[operation] | AWS_GLOBAL_OPTIONS
        return [f"aws s3 {operation}: no option --{o}" for o in options if o not in allowed]
    session = botocore.session.get_session()
    name = AWS_CLI_SERVICES.get(service, service)
    if name not in session.get_available_services():
        return [f"aws {service}: no such service"]
    model = session.get_service_model(name)
    operations = {xform_name(op, "-"): op for op in model.operation_names}
    if operation not in operations:
        return [f"aws {service} {operation}: no such operation"]
    shape = model.operation_model(operations[operation]).input_shape
    members = {xform_name(m, "-") for m in (shape.members if shape else {})}
    booleans = {f"no-{xform_name(m, '-')}" for m, s in (shape.members.items() if shape else []) if s.type_name == "boolean"}
    return [f"aws {service} {operation}: no option --{o}" for o in options if o not in members | booleans | AWS_GLOBAL_OPTIONS]


def step_readme(root: Path, readme: Path, work: Path) -> None:
    start = time.monotonic()
    label = f"readme {readme.name}"
    if not readme.is_file():
        failed(f"{label} ({elapsed(start)})", [f"no {readme}"])
        return
    blocks = rehearsed_blocks(readme.read_text(encoding="utf-8"))
    if not blocks:
        failed(f"{label} ({elapsed(start)})", ["no ```sh block follows a <!-- rehearsed --> line"])
        return
    records, problems = run_blocks(blocks, work)
    parse_dir = work / "parse"
    parse_dir.mkdir()
    for name in ("template.yaml", "samconfig.toml"):
        if (root / name).is_file():
            shutil.copy(root / name, parse_dir / name)
    template = load_yaml(root / "template.yaml")
    guided_before = False
    for record in records:
        argv, where = record["argv"], f"block at line {record['block']}"
        command = " ".join(shlex.quote(a) for a in argv)
        if argv[0] == "sam":
            found, guided = check_sam_record(argv[1:], parse_dir, template, guided_before)
            if guided:  # `sam deploy --guided` saves the stack's name (and parameters) to samconfig.toml
                from samcli.lib.config.samconfig import SamConfig
                config = SamConfig(str(parse_dir), "samconfig.toml")
                config.put(["deploy"], "parameters", "stack_name", "forum-rehearsal")
                config.flush()
                guided_before = True
        elif argv[0] == "aws":
            found = check_aws_record(argv[1:])
        else:
            found = []
        problems += [f"{where}: {short(command, 100)}: {p}" for p in found]
    counts = {name: sum(1 for r in records if r["argv"][0] == name) for name in SHIMMED}
    report(f"{label} ({elapsed(start)})", problems,
           f"{len(blocks)} rehearsed blocks ran; {', '.join(f'{n} {k}' for k, n in counts.items() if n)} commands checked")


# ---------------------------------------------------------------------------------------------
# Step 5: self-test, each rule against its fix reverted

class NotApplicable(Exception):
    """The fix a mutation reverts is not in the template (not landed yet, or made another way)."""


def serverless(template: dict, kind: str) -> Iterator[tuple[str, dict]]:
    for logical_id, resource in resources_of(template):
        if resource.get("Type") == kind:
            yield logical_id, resource


def revert_authorizer_permission(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    hits = 0
    apis_ = [r.get("Properties", {}) for _, r in serverless(template, "AWS::Serverless::HttpApi")]
    for props in apis_ + [template.get("Globals", {}).get("HttpApi", {})]:
        for authorizer in ((props.get("Auth") or {}).get("Authorizers") or {}).values():
            if authorizer.pop("EnableFunctionDefaultPermissions", None) is not None:
                hits += 1
    if not hits:
        raise NotApplicable("no HttpApi authorizer sets EnableFunctionDefaultPermissions")


def revert_route_permissions(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    """Drop the WebSocket routes' explicit permissions (SAM adds the HTTP ones itself)."""
    dropped = [k for k, r in serverless(template, "AWS::Lambda::Permission")
               if "/authorizers/" not in json.dumps(r.get("Properties", {}).get("SourceArn"))]
    if not dropped:
        raise NotApplicable("no explicit route permission (AWS::Lambda::Permission) in template.yaml")
    for logical_id in dropped:
        del template["Resources"][logical_id]


def revert_preflight_route(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    hits = 0
    for _, function in serverless(template, "AWS::Serverless::Function"):
        events = function.get("Properties", {}).get("Events") or {}
        for name, event in list(events.items()):
            props = event.get("Properties") or {}
            if (event.get("Type") == "HttpApi" and str(props.get("Method", "")).upper() == "OPTIONS"
                    and (props.get("Auth") or {}).get("Authorizer") == "NONE"):
                del events[name]
                hits += 1
    if not hits:
        raise NotApplicable("no HttpApi event with Method OPTIONS and Auth: {Authorizer: NONE}")


def revert_connections_delete(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    hits = 0
    for _, function in serverless(template, "AWS::Serverless::Function"):
        for policy in as_list(function.get("Properties", {}).get("Policies")):
            for statement in as_list(policy.get("Statement") if isinstance(policy, dict) else None):
                resources = as_list(statement.get("Resource"))
                kept = [r for r in resources if "/DELETE/@connections/" not in json.dumps(r)]
                if len(kept) != len(resources):
                    hits += 1
                    statement["Resource"] = kept
    if not hits:
        raise NotApplicable("no policy grants .../DELETE/@connections/*")


def revert_topic_key(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    topics = [r for _, r in serverless(template, "AWS::SNS::Topic")
              if "KmsMasterKeyId" in r.get("Properties", {}) and not str(r["Properties"]["KmsMasterKeyId"]).startswith("alias/aws/")]
    if not topics:
        raise NotApplicable("no SNS topic is encrypted with a customer managed key")
    for topic in topics:
        topic["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"


def revert_memory(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    sized = [(int(r["Properties"]["MemorySize"]), k) for k, r in serverless(template, "AWS::Serverless::Function")
             if isinstance(r.get("Properties", {}).get("MemorySize"), int)]
    if not sized:
        raise NotApplicable("no function sets MemorySize")
    template["Resources"][max(sized)[1]]["Properties"]["MemorySize"] = 3538


def add_reserved_concurrency(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    functions = [r for _, r in serverless(template, "AWS::Serverless::Function")]
    if not functions:
        raise NotApplicable("no function")
    functions[-1]["Properties"]["ReservedConcurrentExecutions"] = 5


def add_stream_filters(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    for _, function in serverless(template, "AWS::Serverless::Function"):
        for event in ((function.get("Properties") or {}).get("Events") or {}).values():
            filters = ((event.get("Properties") or {}).get("FilterCriteria") or {}).get("Filters")
            if isinstance(filters, list):
                filters.extend({"Pattern": json.dumps({"eventName": [f"X{i}"]})} for i in range(6 - len(filters)))
                return
    raise NotApplicable("no event with FilterCriteria")


OLD_BUCKET_NAME = "${AWS::StackName}-media-${AWS::AccountId}"


def revert_bucket_name(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    """Back to `${AWS::StackName}-media-${AWS::AccountId}`, wherever the template spells the name."""
    buckets = [r for _, r in serverless(template, "AWS::S3::Bucket") if "BucketName" in r.get("Properties", {})]
    if not buckets:
        raise NotApplicable("no bucket with a BucketName")
    name = buckets[0]["Properties"]["BucketName"]
    sub = name.get("Fn::Sub") if isinstance(name, dict) else None
    text, variables = (sub, None) if isinstance(sub, str) else (sub[0], sub[1]) if isinstance(sub, list) else (None, None)
    if text is None or text == OLD_BUCKET_NAME:
        raise NotApplicable(f"the bucket's name is not a Fn::Sub other than {OLD_BUCKET_NAME}: {short(name)}")

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            value = node.get("Fn::Sub") if len(node) == 1 else None
            if isinstance(value, list) and value[0].find(text) >= 0 and value[1] == variables:
                return {"Fn::Sub": value[0].replace(text, OLD_BUCKET_NAME)}
            if isinstance(value, str) and text in value and variables is None:
                return {"Fn::Sub": value.replace(text, OLD_BUCKET_NAME)}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node
    template["Resources"] = rewrite(template["Resources"])
    template["Globals"] = rewrite(template.get("Globals", {}))


def revert_deletion_policy(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    hits = [r.pop("DeletionPolicy") for _, r in resources_of(template) if r.get("Type") in RETAINED_KINDS and "DeletionPolicy" in r]
    if not hits:
        raise NotApplicable("no table or bucket sets DeletionPolicy")


def revert_access_logs(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    hits = [r["Properties"].pop("AccessLogSettings") for _, r in serverless(template, "AWS::Serverless::HttpApi")
            if "AccessLogSettings" in r.get("Properties", {})]
    if "AccessLogSettings" in template.get("Globals", {}).get("HttpApi", {}):
        hits.append(template["Globals"]["HttpApi"].pop("AccessLogSettings"))
    if not hits:
        raise NotApplicable("no HttpApi sets AccessLogSettings")


def revert_account_dependency(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    """The nested stacks' DependsOn on the AWS::ApiGateway::Account dropped."""
    accounts = {k for k, _ in serverless(template, "AWS::ApiGateway::Account")}
    hits = 0
    for _, resource in resources_of(template):
        depends = as_list(resource.get("DependsOn"))
        if resource.get("Type") == "AWS::Serverless::Application" and accounts & set(depends):
            kept = [d for d in depends if d not in accounts]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
            hits += 1
    if not hits:
        raise NotApplicable("no nested stack DependsOn an AWS::ApiGateway::Account")


def revert_secret_arn_variable(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    """An `X_SECRET_ARN` variable back to `X_SECRET: {{resolve:secretsmanager:<arn>:SecretString}}`."""
    for _, function in serverless(template, "AWS::Serverless::Function"):
        variables = (function.get("Properties", {}).get("Environment") or {}).get("Variables") or {}
        for key in list(variables):
            if key.endswith("_SECRET_ARN"):
                value = variables.pop(key)
                variables[key[: -len("_ARN")]] = {"Fn::Sub": ["{{resolve:secretsmanager:${Arn}:SecretString}}", {"Arn": value}]}
                return
    raise NotApplicable("no function environment variable ends in _SECRET_ARN")


def revert_build_language_extensions(template: dict, nested: dict[str, dict], samconfig: dict) -> None:
    section = ((samconfig.get("default") or {}).get("build") or {}).get("parameters") or {}
    if "language_extensions" not in section:
        raise NotApplicable("[default.build.parameters] does not set language_extensions")
    del section["language_extensions"]


MUTATIONS: tuple[tuple[str, str, Callable[[dict, dict[str, dict], dict], None]], ...] = (
    ("R1", "EnableFunctionDefaultPermissions dropped", revert_authorizer_permission),
    ("R2", "the WebSocket routes' permissions dropped", revert_route_permissions),
    ("R3", "the OPTIONS /{proxy+} route removed", revert_preflight_route),
    ("R4", "DELETE @connections dropped from every role", revert_connections_delete),
    ("R5", "KmsMasterKeyId: alias/aws/sns", revert_topic_key),
    ("R6", "MemorySize 3538", revert_memory),
    ("R6", "ReservedConcurrentExecutions added", add_reserved_concurrency),
    ("R6", "six stream filters", add_stream_filters),
    ("R7", f"BucketName {OLD_BUCKET_NAME}", revert_bucket_name),
    ("R8", "DeletionPolicy removed", revert_deletion_policy),
    ("R9", "the HttpApi's AccessLogSettings removed", revert_access_logs),
    ("R9", "the nested stacks' DependsOn on the API Gateway account dropped", revert_account_dependency),
    ("R10", "a {{resolve:secretsmanager:...}} in an environment", revert_secret_arn_variable),
    ("R11", "language_extensions dropped from [default.build.parameters]", revert_build_language_extensions),
)


def rule_results(template: dict, nested: dict[str, dict], samconfig: dict, source: SourceFiles) -> dict[str, list[str]]:
    translated, translated_nested = translate_source(template, nested)
    return {rule.id: run_rule(rule, translated, translated_nested, source, samconfig) for rule in RULES}


def self_test(root: Path, manifest: Path) -> None:
    start = time.monotonic()
    template = load_yaml(root / "template.yaml")
    nested = load_nested_sources(root, template)
    samconfig = samconfig_of(root)
    source = SourceFiles(root, template, (root / "template.yaml").stat().st_size, {}, manifest)
    try:
        baseline = rule_results(template, nested, samconfig, source)
    except TranslateError as error:
        failed("self-test", [f"template.yaml does not translate: {error}"])
        return
    failing_before = sorted(r for r, p in baseline.items() if p)
    print(f"    baseline ({elapsed(start)}): {', '.join(failing_before) or 'no rule'} fails on the unmutated template")
    for rule_id, description, mutate in MUTATIONS:
        label = f"{rule_id} fails when its fix is reverted ({description})"
        if baseline[rule_id]:
            failed(label, [f"the unmutated template already fails {rule_id}: {short(baseline[rule_id][0], 160)}"])
            continue
        t, n, c = copy.deepcopy(template), copy.deepcopy(nested), copy.deepcopy(samconfig)
        try:
            mutate(t, n, c)
            mutated_source = SourceFiles(root, t, source.template_size, {}, manifest)
            results = rule_results(t, n, c, mutated_source)
        except NotApplicable as error:
            failed(label, [f"cannot revert the fix: {error}"])
            continue
        except TranslateError as error:
            failed(label, [f"the mutated template does not translate: {error}"])
            continue
        newly = sorted(r for r, problems in results.items() if problems and not baseline[r])
        if newly == [rule_id]:
            passed(label, short(results[rule_id][0], 140))
        else:
            failed(label, [f"rules failing only after the mutation: {', '.join(newly) or 'none'} (expected {rule_id} alone)"])
    print(f"    self-test took {elapsed(start)}")


# ---------------------------------------------------------------------------------------------
# Step 6: the translated template for forum-local

def translated_document(root: Path) -> str:
    import samcli
    import samtranslator
    source_bytes = (root / "template.yaml").read_bytes()
    template = yaml_parse(source_bytes.decode("utf-8"))
    locations = nested_locations(template)
    translated, nested = translate_source(template, load_nested_sources(root, template))
    metadata = translated.setdefault("Metadata", {})
    metadata["ForumLocal"] = {
        "SourceSha256": hashlib.sha256(source_bytes).hexdigest(),
        "Generator": f"samtranslator {samtranslator.__version__} (SAM CLI {samcli.__version__}), scripts/rehearse_deploy.py",
        "Nested": {k: {"Location": v, "Sha256": hashlib.sha256((root / v).read_bytes()).hexdigest()} for k, v in locations.items()},
    }
    return json.dumps({"template": translated, "nested": nested}, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_translated(root: Path, path: Path) -> None:
    start = time.monotonic()
    try:
        text = translated_document(root)
    except TranslateError as error:
        failed("write-translated", [str(error)])
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    passed(f"write-translated ({elapsed(start)})", f"{path} ({len(text.encode('utf-8'))} bytes)")


def check_translated(root: Path, path: Path) -> None:
    start = time.monotonic()
    if not path.is_file():
        failed("check-translated", [f"no {path}: write it with --write-translated {path}"])
        return
    try:
        expected = translated_document(root).encode("utf-8")
    except TranslateError as error:
        failed(f"check-translated ({elapsed(start)})", [str(error)])
        return
    actual = path.read_bytes()
    if actual == expected:
        passed(f"check-translated ({elapsed(start)})", f"{path} is template.yaml's translation, byte for byte")
        return
    reason = "differs from template.yaml's translation"
    try:
        recorded = json.loads(actual)["template"]["Metadata"]["ForumLocal"]
        current = json.loads(expected)["template"]["Metadata"]["ForumLocal"]
        if recorded.get("SourceSha256") != current["SourceSha256"]:
            reason = "was written from another template.yaml (SourceSha256 differs)"
        elif recorded.get("Generator") != current["Generator"]:
            reason = f"was written by another generator ({recorded.get('Generator')})"
        elif recorded.get("Nested") != current["Nested"]:
            reason = "was written from other nested templates (realtime/*.yaml)"
    except (ValueError, KeyError, TypeError):
        reason = "is not a translated template of this script"
    first = next((i for i, (a, b) in enumerate(zip(actual.splitlines(), expected.splitlines())) if a != b), None)
    where = f"; first difference at line {first + 1}" if first is not None else ""
    failed(f"check-translated ({elapsed(start)})", [f"{path} {reason}{where}: regenerate it with --write-translated {path}"])


# ---------------------------------------------------------------------------------------------
# The rehearsal

STEPS = ("build", "package", "rules", "readme")


def rehearse(root: Path, steps: list[str], manifest: Path, readme: Path, work: Path) -> None:
    built = step_build(root, work) if "build" in steps else None
    packaged = None
    if "package" in steps:
        if built is None:
            failed("package", ["skipped: no build output" + ("" if "build" in steps else " (package needs the build step)")])
        else:
            packaged = step_package(root, built, work)
    if "rules" in steps:
        run_all_rules(root, manifest, packaged)
    if "readme" in steps:
        step_readme(root, readme, work)


def model_summary(translated: dict, nested: dict[str, dict]) -> str:
    """What the rules will look at, so that a rule passing on nothing shows."""
    model = Model(translated, nested)
    scenario = model.scenarios()[0]
    try:
        found = apis(model, scenario)
        counts = {
            "APIs": f"{len(found)} ({', '.join(sorted(a.protocol for a in found))})",
            "routes": sum(len(a.routes) for a in found),
            "Lambda authorizers": len(lambda_authorizers(model, scenario)),
            "invoke permissions": len(lambda_permissions(model, scenario)),
            "functions": len(list(model.resources("AWS::Lambda::Function"))),
            "roles": len(list(model.resources("AWS::IAM::Role"))),
            "stages": sum(len(v) for v in stages(model, scenario).values()),
        }
    except Unresolvable as error:
        return f"cannot evaluate the template: {error}"
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def run_all_rules(root: Path, manifest: Path, packaged: Packaged | None) -> None:
    start = time.monotonic()
    source_template = load_yaml(root / "template.yaml")
    try:
        if packaged is not None:
            what = "the packaged template"
            translated = sam_transform(packaged.template)
            nested = {k: (sam_transform(v) if v.get("Transform") else v) for k, v in packaged.nested.items()}
            source = SourceFiles(root, source_template, packaged.size, packaged.nested_sizes, manifest)
        else:
            what = "template.yaml (not built or packaged: code and nested templates at placeholders)"
            translated, nested = translate_source(source_template, load_nested_sources(root, source_template))
            sizes = {k: (root / v).stat().st_size for k, v in nested_locations(source_template).items()}
            source = SourceFiles(root, source_template, (root / "template.yaml").stat().st_size, sizes, manifest)
    except TranslateError as error:
        failed("translate", [str(error)])
        return
    counts = ", ".join(f"{k} {len(v.get('Resources') or {})}" for k, v in nested.items())
    passed(f"translate ({elapsed(start)})", f"{what}: {len(translated.get('Resources') or {})} resources after Fn::ForEach "
                                            f"and the SAM transform; nested: {counts or 'none'}; the rules see "
                                            f"{model_summary(translated, nested)}")
    start = time.monotonic()
    scenarios, problems = parameter_sets(translated)
    report("parameter sets", problems, f"rules run for {len(scenarios)} parameter sets the template's Parameters and Rules accept")
    run_rules(translated, nested, source, samconfig_of(root))
    print(f"    rules took {elapsed(start)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the repository")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--manifest", type=Path, help="the AWS calls manifest (default: ROOT/local/aws-calls.json)")
    parser.add_argument("--readme", type=Path, help="the markdown with rehearsed blocks (default: ROOT/README.md)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temp dir (its path is printed)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-test", action="store_true", help="each rule fails when its fix is reverted")
    mode.add_argument("--write-translated", type=Path, metavar="PATH", help="write the translated template.yaml as JSON")
    mode.add_argument("--check-translated", type=Path, metavar="PATH", help="compare PATH with the translation, byte for byte")
    args = parser.parse_args()
    root = args.root.resolve()
    manifest = (args.manifest or root / "local" / "aws-calls.json").resolve()
    readme = (args.readme or root / "README.md").resolve()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rehearse-deploy-"))
    try:
        if args.self_test:
            self_test(root, manifest)
        elif args.write_translated:
            write_translated(root, args.write_translated.resolve())
        elif args.check_translated:
            check_translated(root, args.check_translated.resolve())
        else:
            rehearse(root, steps, manifest, readme, work)
    finally:
        if args.keep_work:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"rehearse_deploy: {len(failures)} failure(s) in {elapsed(start)}")
        return 1
    print(f"rehearse_deploy: OK in {elapsed(start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
