"""Offline checks of infra/bicep: no Bicep compiler can be installed here.

The Bicep CLI ships only as a GitHub release binary or a NuGet package (neither PyPI, npm nor
Debian carry it, and `az bicep install` downloads from GitHub), so instead of `bicep build` this
module parses every .bicep file with a small scanner that understands strings, interpolation and
comments, and checks what a compiler would reject when a name is wrong:

* every module path exists; every param passed to a module is declared by it; every required
  param (no default, not nullable) is passed;
* every ``<module>.outputs.<name>`` refers to an output the module declares;
* every identifier used in an expression is declared (param/var/resource/module, loop variable)
  or a Bicep function/keyword: a typo in a symbol name fails;
* every param is used; main.parameters.json names only params main.bicep declares and gives every
  required one; azure.yaml points at this template;
* every GUID in the templates is a documented built-in role definition id (ROLE_IDS), and the app's
  identity gets the roles the host and the code need;
* the app settings are the two readable blocks in main.bicep and cover what the code reads.

``test_checks_catch_*`` mutate a copy of the templates and require the checks to fail, so the
checks themselves are tested.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "bicep"

# Built-in role definition ids, as published in Azure's built-in roles reference.
ROLE_IDS: dict[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "12cf5a90-567b-43ae-8102-96cf46c7d9b4": "Web PubSub Service Owner",
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
}

# What the function app's identity must hold (Durable + host storage, Web PubSub, OpenAI, ACS,
# Entra-authenticated telemetry).
APP_ROLES = {
    "Storage Blob Data Owner",
    "Storage Queue Data Contributor",
    "Storage Table Data Contributor",
    "Web PubSub Service Owner",
    "Cognitive Services OpenAI User",
    "Communication and Email Service Owner",
    "Monitoring Metrics Publisher",
}

BICEP_FUNCTIONS = {
    # the subset of Bicep's functions a template here may use; extend when a new one is needed
    "any", "array", "base64", "bool", "concat", "contains", "dateTimeAdd", "deployment", "empty",
    "endsWith", "environment", "existingResource", "filter", "first", "format", "guid", "int",
    "intersection", "json", "last", "length", "listKeys", "loadJsonContent", "loadTextContent",
    "managementGroup", "map", "max", "min", "newGuid", "padLeft", "range", "reference", "replace",
    "resourceGroup", "resourceId", "skip", "split", "startsWith", "string", "subscription",
    "subscriptionResourceId", "substring", "take", "tenant", "tenantResourceId", "toLower",
    "toUpper", "trim", "union", "uniqueString", "uri", "utcNow",
}  # fmt: skip
KEYWORDS = {
    "true", "false", "null", "if", "for", "in", "existing", "param", "var", "resource", "module",
    "output", "targetScope", "import", "type", "metadata", "func", "sys", "az", "string", "int",
    "bool", "object", "array",
}  # fmt: skip
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def mask(text: str) -> str:
    """Same length as ``text``: comments and string contents blanked, ``${...}`` kept as code.

    Newlines are preserved so line-based patterns still work and offsets map back to ``text``.
    """
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    def string_end(j: int) -> int:
        """Scan a '...' string starting after the quote; return index after the closing quote."""
        while j < n:
            c = text[j]
            if c == "\\":
                blank(j, j + 2)
                j += 2
            elif c == "'":
                return j + 1
            elif text.startswith("${", j):
                depth, k = 1, j + 2
                while k < n and depth:  # find the matching } of the interpolation
                    ch = text[k]
                    if ch == "'":
                        k = string_end(k + 1)
                        continue
                    depth += ch == "{"
                    depth -= ch == "}"
                    k += 1
                j = k
            else:
                blank(j, j + 1)
                j += 1
        return j

    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            blank(i + 3, end - 3)
            i = end
        elif text[i] == "'":
            i = string_end(i + 1)
        else:
            i += 1
    return "".join(out)


def matching(masked: str, open_idx: int) -> int:
    """Index of the bracket closing the one at ``open_idx`` (strings are already blanked)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    closer = pairs[masked[open_idx]]
    opener = masked[open_idx]
    depth = 0
    for k in range(open_idx, len(masked)):
        if masked[k] == opener:
            depth += 1
        elif masked[k] == closer:
            depth -= 1
            if depth == 0:
                return k
    raise ValueError(f"unbalanced {opener} at {open_idx}")


def object_keys(text: str, masked: str, open_idx: int) -> dict[str, int]:
    """Top-level keys of the object literal at ``open_idx`` -> offset of the value after ':'."""
    close = matching(masked, open_idx)
    keys: dict[str, int] = {}
    depth = 0
    k = open_idx + 1
    expect_key = True
    while k < close:
        c = masked[k]
        if c in "{[(":
            depth += 1
            expect_key = False
        elif c in "}])":
            depth -= 1
        elif depth == 0 and c in "\n,":
            expect_key = True
        elif depth == 0 and expect_key and not c.isspace():
            expect_key = False
            if c == "'":  # quoted key: read it from the original text
                end = text.index("'", k + 1)
                key, after = text[k + 1 : end], end + 1
            else:
                m = IDENT.match(masked, k)
                if not m:
                    k += 1
                    continue
                key, after = m.group(), m.end()
            colon = re.compile(r"\s*:").match(masked, after)
            if colon:
                keys[key] = colon.end()
                k = colon.end()
                continue
        k += 1
    return keys


@dataclass
class Param:
    name: str
    required: bool


@dataclass
class Module:
    symbol: str
    path: str
    params: set[str]
    line: int


@dataclass
class BicepFile:
    path: Path
    text: str
    masked: str
    params: dict[str, Param] = field(default_factory=dict)
    vars: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    modules: dict[str, Module] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    loop_vars: set[str] = field(default_factory=set)

    def line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def where(self, offset: int) -> str:
        return f"{self.path.name}:{self.line_of(offset)}"


DECL = re.compile(r"^(param|var|resource|module|output)\s+([A-Za-z_]\w*)", re.M)


def parse(path: Path) -> BicepFile:
    text = path.read_text()
    masked = mask(text)
    bf = BicepFile(path, text, masked)
    for m in DECL.finditer(masked):
        kind, name = m.groups()
        rest_of_line = masked[m.end() : masked.find("\n", m.end())]
        if kind == "param":
            type_and_default = rest_of_line.strip()
            nullable = type_and_default.split("=")[0].strip().endswith("?")
            bf.params[name] = Param(name, required="=" not in type_and_default and not nullable)
        elif kind == "var":
            bf.vars.add(name)
        elif kind == "resource":
            bf.resources.add(name)
        elif kind == "output":
            bf.outputs.add(name)
        elif kind == "module":
            path_m = re.compile(r"\s*'([^']*)'").match(text, m.end())
            assert path_m, f"{bf.where(m.start())}: module without a path"
            brace = masked.index("{", path_m.end())
            body = object_keys(text, masked, brace)
            passed: set[str] = set()
            if "params" in body:
                params_open = masked.index("{", body["params"])
                passed = set(object_keys(text, masked, params_open))
            bf.modules[name] = Module(name, path_m.group(1), passed, bf.line_of(m.start()))
    for m in re.finditer(r"\bfor\s+(?:([A-Za-z_]\w*)|\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s*\))\s+in\b", masked):
        bf.loop_vars.update(g for g in m.groups() if g)
    for m in re.finditer(r"(?:\(\s*([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s*\)|([A-Za-z_]\w*))\s*=>", masked):
        bf.loop_vars.update(g for g in m.groups() if g)
    return bf


def undeclared_identifiers(bf: BicepFile) -> list[str]:
    """Identifiers used as values that nothing declares (what BCP057 would report)."""
    declared = set(bf.params) | bf.vars | bf.resources | set(bf.modules) | bf.loop_vars
    known = declared | BICEP_FUNCTIONS | KEYWORDS
    problems = []
    masked = bf.masked
    for line_start in [0, *(m.end() for m in re.finditer("\n", masked))]:
        line_end = masked.find("\n", line_start)
        line = masked[line_start : line_end if line_end >= 0 else len(masked)]
        decl = DECL.match(line)
        skip_until = 0
        if decl:
            # `param name type`, `output name type`: the name and the type are not references
            kind = decl.group(1)
            skip_until = decl.end()
            if kind in {"param", "output"}:
                type_m = re.compile(r"\s+[A-Za-z_][\w.]*\??").match(line, skip_until)
                skip_until = type_m.end() if type_m else skip_until
        for m in IDENT.finditer(line):
            if m.start() < skip_until:
                continue
            before = line[: m.start()].rstrip()
            if before.endswith((".", "@", "?.")) or (m.start() > 0 and line[m.start() - 1].isdigit()):
                continue  # property access, decorator, or part of a number/GUID
            after = line[m.end() :]
            if re.match(r"\s*:", after) and (not before or before.endswith(("{", ","))):
                continue  # object key
            if re.match(r"\s*=>", after):
                continue
            if m.group() not in known:
                problems.append(f"{bf.where(line_start + m.start())}: '{m.group()}' is not declared")
    return problems


def unused_params(bf: BicepFile) -> list[str]:
    problems = []
    for name in bf.params:
        uses = [m for m in re.finditer(rf"(?<![\w.@]){re.escape(name)}\b", bf.masked)]
        # the declaration itself is one occurrence
        if len(uses) < 2:
            problems.append(f"{bf.path.name}: param '{name}' is declared but never used")
    return problems


def load(root: Path) -> dict[Path, BicepFile]:
    return {p.resolve(): parse(p) for p in sorted(root.rglob("*.bicep"))}


def check(root: Path) -> list[str]:
    """Every problem a compiler (or azd) would report for these names; empty means consistent."""
    files = load(root)
    problems: list[str] = []
    for bf in files.values():
        problems += undeclared_identifiers(bf)
        problems += unused_params(bf)
        for mod in bf.modules.values():
            target_path = (bf.path.parent / mod.path).resolve()
            target = files.get(target_path)
            where = f"{bf.path.name}:{mod.line}"
            if target is None:
                problems.append(f"{where}: module '{mod.symbol}' path '{mod.path}' does not exist")
                continue
            for name in sorted(mod.params - set(target.params)):
                problems.append(f"{where}: module '{mod.symbol}' passes '{name}', not a param of {mod.path}")
            for p in target.params.values():
                if p.required and p.name not in mod.params:
                    problems.append(f"{where}: module '{mod.symbol}' misses required param '{p.name}'")
        for m in re.finditer(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)", bf.masked):
            symbol, output = m.groups()
            mod = bf.modules.get(symbol)
            if mod is None:
                problems.append(f"{bf.where(m.start())}: '{symbol}' is not a module")
                continue
            target = files.get((bf.path.parent / mod.path).resolve())
            if target is not None and output not in target.outputs:
                problems.append(f"{bf.where(m.start())}: module '{symbol}' ({mod.path}) has no output '{output}'")
        for m in re.finditer(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", bf.text):
            if m.group().lower() not in ROLE_IDS:
                problems.append(f"{bf.where(m.start())}: {m.group()} is not a known built-in role id")
    main = files.get((root / "main.bicep").resolve())
    if main is None:
        return [*problems, "main.bicep is missing"]
    params_file = root / "main.parameters.json"
    given = set(json.loads(params_file.read_text())["parameters"])
    for name in sorted(given - set(main.params)):
        problems.append(f"main.parameters.json: '{name}' is not a param of main.bicep")
    for p in main.params.values():
        if p.required and p.name not in given:
            problems.append(f"main.parameters.json: required param '{p.name}' is not given")
    return problems


def var_object_keys(bf: BicepFile, var: str) -> set[str]:
    m = re.search(rf"^var\s+{var}\s*=\s*\{{", bf.masked, re.M)
    assert m, f"var {var} not found in {bf.path.name}"
    return set(object_keys(bf.text, bf.masked, m.end() - 1))


def app_settings(root: Path = INFRA) -> dict[str, set[str]]:
    """The function app's settings from main.bicep: {'host': ..., 'code': ...} (for contract tests)."""
    main = parse(root / "main.bicep")
    return {"host": var_object_keys(main, "hostSettings"), "code": var_object_keys(main, "codeSettings")}


def role_ids_assigned_to_app(root: Path = INFRA) -> set[str]:
    bf = parse(root / "modules" / "role-assignments.bicep")
    roles_var = {k: None for k in var_object_keys(bf, "roles")}
    ids = dict(re.findall(r"^\s*(\w+):\s*'([0-9a-f-]{36})'", bf.text, re.M))
    assert set(ids) == set(roles_var)
    output = re.search(r"^output appRoleDefinitionIds array = (.*?)\)\s*$", bf.text, re.M | re.S)
    assert output
    used = set(re.findall(r"roles\.(\w+)", output.group(1)))
    storage = re.search(r"var storageRoles = \[(.*?)\]", bf.text, re.S)
    assert storage
    used |= set(re.findall(r"roles\.(\w+)", storage.group(1)))
    return {ids[name] for name in used}


# --- the real templates ------------------------------------------------------------------------


def test_templates_are_consistent() -> None:
    assert check(INFRA) == []


def test_every_expected_file_is_there() -> None:
    expected = {
        "main.bicep",
        "modules/identity.bicep",
        "modules/monitoring.bicep",
        "modules/storage.bicep",
        "modules/webpubsub.bicep",
        "modules/communication.bicep",
        "modules/openai.bicep",
        "modules/function-app.bicep",
        "modules/role-assignments.bicep",
    }
    present = {str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep")}
    assert expected <= present
    main = parse(INFRA / "main.bicep")
    assert re.search(r"^targetScope = 'subscription'$", main.text, re.M)
    assert {"environmentName", "location", "principalId", "openAiLocation"} <= set(main.params)
    reachable = {(INFRA / m.path).resolve() for m in main.modules.values()}
    assert {(INFRA / p).resolve() for p in expected if p != "main.bicep"} == reachable


def test_the_app_identity_gets_exactly_the_needed_built_in_roles() -> None:
    names = {ROLE_IDS[i] for i in role_ids_assigned_to_app()}
    assert names == APP_ROLES


def test_flex_consumption_function_app_shape() -> None:
    text = (INFRA / "modules" / "function-app.bicep").read_text()
    for needle in (
        "name: 'FC1'",
        "tier: 'FlexConsumption'",
        "kind: 'functionapp,linux'",
        "type: 'UserAssigned'",
        "type: 'UserAssignedIdentity'",
        "name: 'python'",
        "'azd-service-name': 'api'",
    ):
        assert needle in text, needle
    main = parse(INFRA / "main.bicep")
    assert "instanceMemoryMB: 2048" in main.text and "pythonVersion: '3.11'" in main.text


def test_provision_reads_no_function_key_and_the_postdeploy_hook_sets_the_event_handler() -> None:
    """Issue 10 defect 6: the extension's system key does not exist during `azd provision`."""
    texts = {p.name: p.read_text() for p in INFRA.rglob("*.bicep")}
    for name, text in texts.items():
        masked = mask(text)
        assert "listKeys" not in masked and "/host/default" not in text, name
        assert "Microsoft.Web/sites/host" not in text, name  # no systemkeys resource either
        assert "Microsoft.SignalRService/webPubSub/hubs" not in text, name  # the hook owns the hub
    yaml = pytest.importorskip("yaml")
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]
    script = REPO / "infra" / "hooks" / "postdeploy.sh"
    for platform in ("posix", "windows"):
        assert hooks["postdeploy"][platform]["run"] == "bash ./infra/hooks/postdeploy.sh"
        assert hooks["postdeploy"][platform]["continueOnError"] is False
    assert script.exists()
    main = parse(INFRA / "main.bicep")
    # every input the hook needs is an azd output of main.bicep
    needed = set(re.findall(r'\$\{(\w+):\?', script.read_text()))
    assert needed == {"AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "SERVICE_API_URI", "WEBPUBSUB_NAME"}
    outputs = {m.group(1) for m in re.finditer(r"^output (\w+) ", main.text, re.M)}
    assert needed | {"WEBPUBSUB_HUB"} <= outputs


def test_no_keys_where_a_role_suffices() -> None:
    texts = {p.name: p.read_text() for p in INFRA.rglob("*.bicep")}
    assert "allowSharedKeyAccess: false" in texts["storage.bicep"]
    assert "disableLocalAuth: true" in texts["webpubsub.bicep"]
    assert "disableLocalAuth: true" in texts["openai.bicep"]
    assert "DisableLocalAuth: true" in texts["monitoring.bicep"]
    settings = app_settings()
    everything = settings["host"] | settings["code"]
    assert not {s for s in everything if re.search(r"(?i)key|connectionstring$|password|secret", s)}
    # no list* call at all: the Web PubSub extension's key is read after deploy (postdeploy hook)
    calls = [(n, m.group()) for n, t in texts.items() for m in re.finditer(r"list\w+\(", t)]
    assert calls == []


# Settings the code reads that Azure must NOT get, each with the reason (docs/deploy.md §1).
NOT_IN_AZURE: dict[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig and rejects the setting",
    "AzureWebJobsStorage": "identity-based instead: AzureWebJobsStorage__accountName/__credential/__clientId",
    "WebPubSubConnectionString": "key auth (twin); Azure uses WebPubSubConnectionString__serviceUri + identity",
    "BABELROOM_TOKEN_KEY": "only for ROOM_SERVICE=local",
    "ACS_CONNECTION_STRING": "key auth; Azure uses ACS_ENDPOINT + identity",
    "OPENAI_BASE_URL": "the twin's engine or OpenAI itself, not Azure OpenAI",
    "OPENAI_API_KEY": "OpenAI itself, not Azure OpenAI",
    "AZURE_OPENAI_API_KEY": "key auth; Azure uses Entra ID (Cognitive Services OpenAI User)",
}


def code_setting_names() -> set[str]:
    """Every setting name the code declares: SETTINGS constants and local.settings.sample.json."""
    from babelroom.adapters import acs, realtime

    names: set[str] = set(acs.SETTINGS) | set(realtime.SETTINGS)
    try:
        from babelroom import config

        names |= set(config.SETTINGS)
    except ImportError:  # pragma: no cover - config lands with the function app work
        pass
    sample = REPO / "local.settings.sample.json"
    if sample.exists():
        names |= set(json.loads(sample.read_text())["Values"])
    return names


def test_app_settings_are_the_two_blocks_and_match_what_the_code_reads() -> None:
    settings = app_settings()
    assert not settings["host"] & settings["code"]
    assert {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "WebPubSubConnectionString__serviceUri",
        "WebPubSubConnectionString__credential",
        "WebPubSubConnectionString__clientId",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    } <= settings["host"]
    everything = settings["host"] | settings["code"]
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & everything
    main = parse(INFRA / "main.bicep")
    assert "appSettings: union(hostSettings, codeSettings)" in main.text
    assert settings_problems(INFRA) == []


def settings_problems(root: Path) -> list[str]:
    """The config contract from the Bicep side: what the code reads vs. what Azure sets."""
    settings = app_settings(root)
    everything = settings["host"] | settings["code"]
    read = code_setting_names()
    problems = [
        f"{n}: read by the code but not set in main.bicep" for n in sorted(read - everything - set(NOT_IN_AZURE))
    ]
    problems += [f"{n}: set in codeSettings but read by no code" for n in sorted(settings["code"] - read)]
    problems += [f"{n}: set in Azure but listed in NOT_IN_AZURE" for n in sorted(everything & set(NOT_IN_AZURE))]
    return problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  SEGMENT_QUEUE: storage.outputs.segmentQueueName\n", "", "SEGMENT_QUEUE: read by the code but not set"),
        (
            "  ROOM_SERVICE: 'acs'\n",
            "  ROOM_SERVICE: 'acs'\n  ROOMS_SERVICE: 'acs'\n",
            "ROOMS_SERVICE: set in codeSettings but",
        ),
        (
            "  WEBPUBSUB_HUB: webPubSubHubName\n",
            "  WEBPUBSUB_HUB: webPubSubHubName\n  BABELROOM_TOKEN_KEY: 'x'\n",
            "BABELROOM_TOKEN_KEY: set in Azure",
        ),
    ],
)
def test_settings_contract_catches_a_wrong_name(old: str, new: str, expected: str, tmp_path: Path) -> None:
    copy = tmp_path / "bicep"
    shutil.copytree(INFRA, copy)
    edit("main.bicep", old, new)(copy)
    assert any(expected in p for p in settings_problems(copy)), settings_problems(copy)


def test_azure_yaml_points_at_this_template() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert doc["name"] == "babelroom"
    assert doc["infra"] == {"provider": "bicep", "path": "infra/bicep", "module": "main"}
    assert doc["services"]["api"] == {"project": ".", "language": "python", "host": "function"}


def test_parameters_file_uses_azd_environment_substitution() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_the_scanner_keeps_interpolations_and_drops_strings_and_comments() -> None:
    text = "var a = 'x ${b.outputs.c} // y' // z ${d}\n/* e */ var f = '''g ${h}'''"
    masked = mask(text)
    assert len(masked) == len(text)
    assert "b.outputs.c" in masked
    assert not {"x", "y", "z", "d", "e", "g", "h"} & set(IDENT.findall(masked))


# --- the checks fail when a name is wrong --------------------------------------------------------

Mutation = Callable[[Path], None]


def edit(rel: str, old: str, new: str, count: int = 1) -> Mutation:
    def apply(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text, f"mutation target {old!r} not in {rel}"
        path.write_text(text.replace(old, new, count))

    return apply


MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "module path": (edit("main.bicep", "'modules/openai.bicep'", "'modules/open-ai.bicep'"), "does not exist"),
    "passed param not declared": (
        edit("main.bicep", "    modelVersion: realtimeModelVersion", "    modelVerison: realtimeModelVersion"),
        "passes 'modelVerison'",
    ),
    "required param missing": (
        edit("main.bicep", "    deploymentContainerName: storage.outputs.deploymentContainerName\n", ""),
        "misses required param 'deploymentContainerName'",
    ),
    "module output misspelt": (
        edit("main.bicep", "identity.outputs.clientId", "identity.outputs.clientID"),
        "has no output 'clientID'",
    ),
    "module output removed": (
        edit("modules/storage.bicep", "output segmentQueueName string = segmentQueue.name\n", ""),
        "has no output 'segmentQueueName'",
    ),
    "param renamed in module": (
        edit("modules/webpubsub.bicep", "param identityId string", "param identityResourceId string"),
        "'identityId' is not declared",
    ),
    "symbol typo": (edit("modules/storage.bicep", "parent: blobService\n", "parent: blobServce\n"), "'blobServce'"),
    "unused param": (
        edit("modules/communication.bicep", "param tags object = {}", "param tags object = {}\nparam unused string"),
        "'unused' is declared but never used",
    ),
    "wrong role id": (
        edit("modules/role-assignments.bicep", "af87-19fc36ad61bd'", "af87-19fc36ad61be'"),
        "not a known built-in role id",
    ),
    "parameters.json name": (
        edit("main.parameters.json", '"openAiLocation"', '"openaiLocation"'),
        "'openaiLocation' is not a param",
    ),
    "parameters.json misses a required param": (
        edit("main.parameters.json", '"environmentName"', '"envName"'),
        "required param 'environmentName' is not given",
    ),
    "module symbol in outputs": (
        edit("main.bicep", "string = communication.outputs.endpoint", "string = acs.outputs.endpoint"),
        "'acs' is not a module",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_checks_catch_a_wrong_name(name: str, tmp_path: Path) -> None:
    mutate, expected = MUTATIONS[name]
    copy = tmp_path / "bicep"
    shutil.copytree(INFRA, copy)
    assert check(copy) == []  # the copy starts clean
    mutate(copy)
    problems = check(copy)
    assert any(expected in p for p in problems), problems


def test_role_check_catches_a_missing_app_role(tmp_path: Path) -> None:
    copy = tmp_path / "bicep"
    shutil.copytree(INFRA, copy)
    edit("modules/role-assignments.bicep", "  roles.storageTableDataContributor\n]", "]")(copy)
    names = {ROLE_IDS[i] for i in role_ids_assigned_to_app(copy)}
    assert APP_ROLES - names == {"Storage Table Data Contributor"}
