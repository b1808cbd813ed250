"""What the Argo Server checks on what it receives, in its order:

1. query parameters, decoded by grpc-gateway from the server's swagger (a boolean that
   is not one is ``400 type mismatch, parameter: ...``);
2. the request body against its swagger definition (``WorkflowCreateRequest``...), the
   Workflow inside it against Argo's published JSON schema (draft 2020-12, IntOrString
   read as ``anyOf [integer, string]``); a field the schema does not know is refused when
   the double is strict (the Argo CLI's ``--strict``; the server itself drops it);
3. Argo's own validation (``workflow/validate``) for what the double runs: template names,
   the entrypoint, one type per template, DAG tasks, dependencies and cycles, retry
   policies, deadlines, parallelism; its messages are Argo's;
4. the Kubernetes API's ObjectMeta checks on the name, labels and annotations, answered
   through the Argo Server as ``InvalidArgument``.

The schemas are read from ``../shared/upstream-schemas`` once per process.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from llmops.testing.argo.errors import invalid_argument, unimplemented
from llmops.testing.kubernetes.api_errors import ApiStatusError
from llmops.testing.kubernetes.schema import check_metadata, check_metadata_types
from llmops.testing.upstream import upstream_schema

WORKFLOW_SCHEMA_FILE = "argo-workflows-jsonschema.json"
SERVER_SWAGGER_FILE = "argo-server-swagger.json"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_WORKFLOW = "io.argoproj.workflow.v1alpha1.Workflow"
_PREFIX = "io.argoproj.workflow.v1alpha1."
#: Request bodies that carry a whole Workflow: it is checked against the JSON schema, so
#: the swagger check sees it as an object only (one error per mistake, not two).
_CARRIES_WORKFLOW = frozenset({"WorkflowCreateRequest", "WorkflowLintRequest"})
#: Argo's isValidWorkflowFieldName.
_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_FIELD_NAME_MAX = 128
_MAX_NAME = 63
RETRY_POLICIES = ("Always", "OnFailure", "OnError", "OnTransientError", "")
#: Template types as Argo lists them, and the ones the double's controller runs.
TEMPLATE_TYPES = (
    "container",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "containerSet",
    "data",
    "http",
    "plugin",
)
RUNNABLE_TYPES = ("container", "dag")
_TASK_FEATURES_NOT_RUN = ("withItems", "withParam", "withSequence", "when", "continueOn")


# -------------------------------------------------------------------------------------
# The schemas, loaded and compiled once
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryParameter:
    name: str
    kind: str  # string, boolean, integer, array


class ArgoSchemas:
    """Argo's JSON schema and the Argo Server's swagger, compiled."""

    def __init__(self, workflow_schema: dict[str, Any], swagger: dict[str, Any]) -> None:
        from jsonschema import (  # type: ignore[import-untyped]
            Draft4Validator,
            Draft202012Validator,
        )

        definitions = workflow_schema["definitions"]
        definitions[_INT_OR_STRING] = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        self.definitions: dict[str, Any] = definitions
        self._workflow: Any = Draft202012Validator(
            {
                "$schema": workflow_schema["$schema"],
                "$ref": f"#/definitions/{_WORKFLOW}",
                "definitions": definitions,
            }
        )
        swagger_definitions = dict(swagger["definitions"])  # the entries changed are copied
        swagger_definitions[_INT_OR_STRING] = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        for name in _CARRIES_WORKFLOW:
            request = dict(swagger_definitions[_PREFIX + name])
            request["properties"] = {**request["properties"], "workflow": {"type": "object"}}
            swagger_definitions[_PREFIX + name] = request
        self._bodies: dict[str, Any] = {
            name.removeprefix(_PREFIX): Draft4Validator(
                {"$ref": f"#/definitions/{name}", "definitions": swagger_definitions}
            )
            for name in swagger_definitions
            if name.startswith(_PREFIX) and name.endswith("Request")
        }
        self._parameters: dict[tuple[str, str], list[QueryParameter]] = {}
        for path, operations in swagger["paths"].items():
            for method, operation in operations.items():
                self._parameters[(method.upper(), path)] = [
                    QueryParameter(p["name"], p.get("type", "string"))
                    for p in operation.get("parameters", [])
                    if p.get("in") == "query"
                ]

    def check_query(
        self, method: str, route: str, query: Mapping[str, list[str]]
    ) -> dict[str, Any]:
        """The query decoded as grpc-gateway decodes it for the route (swagger path):
        booleans and integers parsed, unknown names ignored.

        :raises ArgoApiError: InvalidArgument for a value of the wrong type.
        """
        decoded: dict[str, Any] = {}
        for parameter in self._parameters.get((method, route), []):
            values = query.get(parameter.name)
            if not values:
                continue
            if parameter.kind == "array":
                decoded[parameter.name] = list(values)
                continue
            value = values[-1]
            if parameter.kind == "boolean":
                decoded[parameter.name] = _parse_bool(parameter.name, value)
            elif parameter.kind == "integer":
                decoded[parameter.name] = _parse_int(parameter.name, value)
            else:
                decoded[parameter.name] = value
        return decoded

    def check_body(self, definition: str, body: Any) -> None:
        """``body`` against the swagger definition ``definition`` (short name).

        :raises ArgoApiError: InvalidArgument naming the first wrong field.
        """
        if not isinstance(body, dict):
            raise invalid_argument(
                f"json: cannot unmarshal {_json_type(body)} into Go value of type "
                f"{_PREFIX.replace('io.argoproj.workflow.', '')}{definition}"
            )
        error = _first_error(self._bodies[definition].iter_errors(body))
        if error is not None:
            raise invalid_argument(error)

    def check_workflow(self, workflow: Any, *, strict: bool) -> None:
        """A Workflow against Argo's JSON schema (and, when ``strict``, no unknown fields).

        :raises ArgoApiError: InvalidArgument naming the first wrong field.
        """
        if not isinstance(workflow, dict):
            raise invalid_argument("workflow body not specified")
        if strict:
            unknown = list(self.unknown_fields(workflow))
            if unknown:
                raise invalid_argument(
                    f'json: unknown field "{unknown[0]}" (the Argo Server double is strict, '
                    "as the Argo CLI's --strict is)"
                )
        error = _first_error(self._workflow.iter_errors(workflow))
        if error is not None:
            raise invalid_argument(error)

    def unknown_fields(self, workflow: Mapping[str, Any]) -> Iterator[str]:
        """Paths of the fields Argo's schema does not declare (``status`` excepted)."""
        body = {k: v for k, v in workflow.items() if k != "status"}
        yield from self._unknown(body, {"$ref": f"#/definitions/{_WORKFLOW}"}, "")

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _unknown(self, value: Any, schema: Mapping[str, Any], path: str) -> Iterator[str]:
        schema = self._resolve(schema)
        if isinstance(value, dict):
            properties = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                where = _join(path, str(key))
                if properties is not None and key in properties:
                    yield from self._unknown(item, properties[key], where)
                elif isinstance(extra, dict):
                    yield from self._unknown(item, extra, where)
                elif properties is not None and extra is None:
                    yield where
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                yield from self._unknown(item, schema["items"], f"{path}[{index}]")


_lock = threading.Lock()
_schemas: ArgoSchemas | None = None


def argo_schemas() -> ArgoSchemas:
    """The compiled schemas (read and compiled on the first call of the process)."""
    global _schemas
    with _lock:
        if _schemas is None:
            workflow_schema = json.loads(upstream_schema(WORKFLOW_SCHEMA_FILE).read_text())
            swagger = json.loads(upstream_schema(SERVER_SWAGGER_FILE).read_text())
            _schemas = ArgoSchemas(workflow_schema, swagger)
        return _schemas


def _parse_bool(name: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise invalid_argument(
        f'type mismatch, parameter: {name}, error: strconv.ParseBool: parsing "{value}": '
        "invalid syntax"
    )


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise invalid_argument(
            f'type mismatch, parameter: {name}, error: strconv.ParseInt: parsing "{value}": '
            "invalid syntax"
        ) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "object"


def _first_error(errors: Iterable[Any]) -> str | None:
    """The shallowest schema error, as ``path: what is wrong``."""
    found = sorted(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if not found:
        return None
    error = found[0]
    path = _path(error.absolute_path) or "(root)"
    if error.validator == "anyOf" and _is_int_or_string(error.validator_value):
        return f"{path}: {json.dumps(error.instance)} is not an integer or a string"
    if error.validator == "required":
        missing = [
            k
            for k in error.validator_value
            if isinstance(error.instance, dict) and k not in error.instance
        ]
        return (
            f"{_join(_path(error.absolute_path), missing[0]) if missing else path}: Required value"
        )
    return f"{path}: {error.message}"


def _is_int_or_string(value: Any) -> bool:
    return bool(value == [{"type": "integer"}, {"type": "string"}])


# -------------------------------------------------------------------------------------
# Argo's own validation (workflow/validate), the part the double's controller relies on
# -------------------------------------------------------------------------------------


def _field_name_problem(name: str) -> str | None:
    if len(name) > _FIELD_NAME_MAX:
        return f"must be no more than {_FIELD_NAME_MAX} characters"
    if not _FIELD_NAME.fullmatch(name):
        return (
            "name must consist of alpha-numeric characters or '-', and must start with an "
            "alpha-numeric character (e.g. My-name1-2, 123-NAME)"
        )
    return None


def _check_names(items: list[Any], prefix: str) -> None:
    """Argo's validateWorkflowFieldNames: each ``name`` required, valid and unique."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not name:
            raise invalid_argument(f"{prefix}[{index}].name is required")
        problem = _field_name_problem(name)
        if problem is not None:
            raise invalid_argument(f"{prefix}[{index}].name: '{name}' is invalid: {problem}")
        if name in seen:
            raise invalid_argument(f"{prefix}[{index}].name '{name}' is not unique")
        seen.add(name)


def template_type(template: Mapping[str, Any]) -> str | None:
    """The one type a template declares (container, dag, ...), or None."""
    found = [t for t in TEMPLATE_TYPES if template.get(t) is not None]
    return found[0] if len(found) == 1 else None


def _check_template_type(template: Mapping[str, Any]) -> str:
    found = [t for t in TEMPLATE_TYPES if template.get(t) is not None]
    name = template.get("name")
    choices = (
        "choose one of: container, steps, script, resource, dag, suspend, template, template ref"
    )
    if not found:
        raise invalid_argument(f"templates.{name} template type unspecified. {choices}")
    if len(found) > 1:
        raise invalid_argument(f"templates.{name} multiple template types specified. {choices}")
    return found[0]


def _is_positive_int_or_variable(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    if isinstance(value, str):
        return value.isdigit() or (value.startswith("{{") and value.endswith("}}"))
    return False


def dag_dependencies(task: Mapping[str, Any]) -> list[str]:
    """The tasks a DAG task depends on: its ``dependencies``, or the names in ``depends``."""
    if task.get("depends"):
        return sorted({name for name, _ in parse_depends(str(task["depends"])).references()})
    return [str(d) for d in task.get("dependencies") or []]


def check_workflow_semantics(workflow: Mapping[str, Any], *, runnable: bool) -> None:
    """Argo's validation of a Workflow the schema admitted. With ``runnable``, templates
    and task features the double's controller does not run are refused with 501.

    :raises ArgoApiError: InvalidArgument with Argo's message.
    """
    metadata = workflow.get("metadata") or {}
    name = metadata.get("name") or ""
    if len(name) > _MAX_NAME:
        raise invalid_argument(
            f"workflow name {json.dumps(name)} must not be more than {_MAX_NAME} characters "
            f"long (currently {len(name)})"
        )
    spec = workflow.get("spec") or {}
    if spec.get("workflowTemplateRef") is not None:
        if runnable:
            raise unimplemented(
                "the Argo Server double does not model WorkflowTemplates (spec.workflowTemplateRef)"
            )
        return
    templates: list[dict[str, Any]] = list(spec.get("templates") or [])
    _check_names(templates, "spec.templates")
    by_name = {t["name"]: t for t in templates}
    entrypoint = spec.get("entrypoint") or ""
    if not entrypoint:
        raise invalid_argument("spec.entrypoint is required")
    if entrypoint not in by_name:
        raise invalid_argument(f"template name '{entrypoint}' undefined")
    for template in templates:
        kind = _check_template_type(template)
        _check_template(template, kind, by_name, runnable=runnable)
    if runnable and template_type(by_name[entrypoint]) not in RUNNABLE_TYPES:
        raise unimplemented(
            f"the Argo Server double runs dag and container entrypoints only (templates."
            f"{entrypoint} is {template_type(by_name[entrypoint])})"
        )


def _check_template(
    template: Mapping[str, Any],
    kind: str,
    by_name: Mapping[str, Mapping[str, Any]],
    *,
    runnable: bool,
) -> None:
    name = template["name"]
    leaf = kind in ("container", "script", "resource", "data", "http", "plugin", "containerSet")
    retry = template.get("retryStrategy") or {}
    policy = retry.get("retryPolicy", "")
    if policy not in RETRY_POLICIES:
        raise invalid_argument(f"templates.{name} {policy} is not a valid RetryPolicy")
    deadline = template.get("activeDeadlineSeconds")
    if deadline is not None:
        if not leaf:
            raise invalid_argument(
                f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates"
            )
        if not _is_positive_int_or_variable(deadline):
            raise invalid_argument(
                f"templates.{name}.activeDeadlineSeconds must be a positive integer > 0 or an "
                "argo variable"
            )
    if leaf and template.get("parallelism") is not None:
        raise invalid_argument(
            f"templates.{name}.parallelism is only valid for steps and dag templates"
        )
    if kind == "container" and not (template["container"].get("image") or ""):
        raise invalid_argument(f"templates.{name}.container.image may not be empty")
    if kind == "dag":
        _check_dag(template, by_name, runnable=runnable)


def _check_dag(
    template: Mapping[str, Any], by_name: Mapping[str, Mapping[str, Any]], *, runnable: bool
) -> None:
    name = template["name"]
    tasks: list[dict[str, Any]] = list((template.get("dag") or {}).get("tasks") or [])
    if not tasks:
        raise invalid_argument(f"templates.{name} must have at least one task")
    _check_names(tasks, f"templates.{name}.tasks")
    using_depends = any(t.get("depends") for t in tasks)
    names = {t["name"] for t in tasks}
    for task in tasks:
        task_name = task["name"]
        where = f"templates.{name}.tasks.{task_name}"
        if task_name[0].isdigit():
            raise invalid_argument(
                f"{where} name cannot begin with a digit when using either 'depends' or "
                "'dependencies'"
            )
        if using_depends and task.get("dependencies"):
            raise invalid_argument(
                f"templates.{name} cannot use both 'depends' and 'dependencies' in the same "
                "DAG template"
            )
        if using_depends and task.get("continueOn") is not None:
            raise invalid_argument(
                f"templates.{name} cannot use 'continueOn' when using 'depends'. Instead use "
                "'dep-task.Failed'/'dep-task.Errored'"
            )
        target = task.get("template")
        if task.get("templateRef") is not None or task.get("inline") is not None:
            if runnable:
                raise unimplemented(
                    f"{where}: the Argo Server double runs tasks that name a template of the "
                    "workflow only (no templateRef, no inline)"
                )
            continue
        if not target:
            raise invalid_argument(f"{where} template name is required")
        if target not in by_name:
            raise invalid_argument(f"{where} template name '{target}' undefined")
        if runnable and template_type(by_name[target]) != "container":
            raise unimplemented(
                f"{where}: the Argo Server double runs DAG tasks of container templates only "
                f"(templates.{target} is {template_type(by_name[target])})"
            )
        if runnable:
            for feature in _TASK_FEATURES_NOT_RUN:
                if task.get(feature) is not None:
                    raise unimplemented(f"{where}: the Argo Server double does not run {feature}")
        if task.get("depends"):
            try:
                parse_depends(str(task["depends"]))
            except ValueError as error:
                raise invalid_argument(f"{where} {error}") from None
        for dependency in dag_dependencies(task):
            if dependency not in names:
                raise invalid_argument(f"{where} dependency '{dependency}' not defined")
    cycle = _find_cycle({t["name"]: dag_dependencies(t) for t in tasks})
    if cycle is not None:
        raise invalid_argument(
            f"templates.{name}.tasks dependency cycle detected: {'->'.join(cycle)}"
        )


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        trail.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


def check_workflow_metadata(workflow: Mapping[str, Any]) -> None:
    """The Kubernetes API's ObjectMeta checks, as the Argo Server passes them on.

    :raises ArgoApiError: InvalidArgument (the Kubernetes API's 400 and 422).
    """
    metadata = workflow.get("metadata")
    if not isinstance(metadata, dict):
        raise invalid_argument("metadata: Required value")
    try:
        check_metadata_types(metadata)
    except ApiStatusError as error:
        raise invalid_argument(error.message) from None
    causes = check_metadata(metadata)
    if causes:
        lines = [c.line() for c in causes]
        joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
        name = metadata.get("name") or ""
        raise invalid_argument(f'Workflow.argoproj.io "{name}" is invalid: {joined}')


# -------------------------------------------------------------------------------------
# ``depends`` expressions
# -------------------------------------------------------------------------------------

#: Results a ``depends`` reference may test; a bare name means Argo's default.
TASK_RESULTS = (
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
)
_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[A-Za-z0-9][-A-Za-z0-9_]*(?:\.[A-Za-z]+)?)")


@dataclass(frozen=True)
class Depends:
    """A parsed ``depends`` expression: a small tree of and/or/not over task results."""

    op: str  # "ref", "and", "or", "not"
    args: tuple[Depends, ...] = ()
    task: str = ""
    result: str = ""

    def references(self) -> Iterator[tuple[str, str]]:
        if self.op == "ref":
            yield self.task, self.result
        for arg in self.args:
            yield from arg.references()

    def evaluate(self, phases: Mapping[str, str]) -> bool:
        """The expression's value given each referenced task's node phase."""
        if self.op == "ref":
            return _result_holds(phases.get(self.task, ""), self.result)
        if self.op == "not":
            return not self.args[0].evaluate(phases)
        values = (arg.evaluate(phases) for arg in self.args)
        return all(values) if self.op == "and" else any(values)


def _result_holds(phase: str, result: str) -> bool:
    if result == "":
        return phase in ("Succeeded", "Skipped", "Daemoned")
    if result == "Errored":
        return phase == "Error"
    if result in ("AnySucceeded", "AllFailed"):  # for expanded tasks; one node here
        return phase == ("Succeeded" if result == "AnySucceeded" else "Failed")
    return phase == result


def parse_depends(text: str) -> Depends:
    """Parse a ``depends`` expression (``a && (b || c.Failed)``).

    :raises ValueError: for an expression Argo would not parse.
    """
    tokens: list[str] = []
    position = 0
    while position < len(text.rstrip()):
        found = _TOKEN.match(text, position)
        if found is None:
            raise ValueError(f"invalid 'depends' expression {text!r}")
        tokens.append(found.group(1))
        position = found.end()
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> str:
        nonlocal index
        if index >= len(tokens):
            raise ValueError(f"invalid 'depends' expression {text!r}: unexpected end")
        index += 1
        return tokens[index - 1]

    def parse_or() -> Depends:
        args = [parse_and()]
        while peek() == "||":
            take()
            args.append(parse_and())
        return args[0] if len(args) == 1 else Depends("or", tuple(args))

    def parse_and() -> Depends:
        args = [parse_not()]
        while peek() == "&&":
            take()
            args.append(parse_not())
        return args[0] if len(args) == 1 else Depends("and", tuple(args))

    def parse_not() -> Depends:
        word = take()
        if word == "!":
            return Depends("not", (parse_not(),))
        if word == "(":
            inner = parse_or()
            if take() != ")":
                raise ValueError(f"invalid 'depends' expression {text!r}: missing ')'")
            return inner
        if word in (")", "&&", "||"):
            raise ValueError(f"invalid 'depends' expression {text!r}: unexpected {word!r}")
        task, _, result = word.partition(".")
        if result and result not in TASK_RESULTS:
            raise ValueError(f"invalid 'depends' expression {text!r}: unknown result {result!r}")
        return Depends("ref", task=task, result=result)

    tree = parse_or()
    if index != len(tokens):
        raise ValueError(f"invalid 'depends' expression {text!r}: unexpected {tokens[index]!r}")
    return tree
