"""What kube-apiserver (with KServe's CRD and webhook installed) checks on a written
InferenceService, in its order:

1. decoding, with strict field validation: a field the CRD's structural schema does not
   know is ``400 strict decoding error: unknown field "spec.predictor.foo"`` (or dropped,
   under ``fieldValidation=Warn|Ignore``); ``status`` keeps unknown fields (the CRD
   preserves them there);
2. defaulting from the schema's ``default`` values;
3. validation: object metadata (name, labels, annotations, finalizers), apiVersion/kind,
   and the CRD's openAPIV3Schema (``jsonschema``): ``422 Invalid`` with causes;
4. KServe's validating webhook: ``403 Forbidden``, ``admission webhook ... denied the
   request: ...``.

The 2 MB CRD is parsed once per process (PyYAML's C loader) and its validator compiled once.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmops.testing.kubernetes.api_errors import (
    API_VERSION,
    KIND,
    ApiStatusError,
    Cause,
    bad_request,
    forbidden_by_webhook,
    invalid,
)

CRD_FILE = "kserve-inferenceservices-crd.yaml"

#: ObjectMeta's fields: the CRD declares ``metadata`` as a bare object, kube-apiserver
#: decodes it strictly as ObjectMeta.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
#: KServe's own rule for InferenceService names (IsvcNameFmt).
ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ISVC_NAME_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_ANNOTATIONS_MAX_BYTES = 256 * 1024

#: PredictorSpec's fields in KServe's order, as its "exactly one of" message lists them.
_PREDICTOR_FIELDS = (
    ("sklearn", "SKLearn"),
    ("xgboost", "XGBoost"),
    ("tensorflow", "Tensorflow"),
    ("pytorch", "PyTorch"),
    ("triton", "Triton"),
    ("onnx", "ONNX"),
    ("huggingface", "HuggingFace"),
    ("pmml", "PMML"),
    ("lightgbm", "LightGBM"),
    ("paddle", "Paddle"),
    ("model", "Model"),
)
_EXACTLY_ONE = (
    "exactly one of [SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, "
    "LightGBM, Paddle, Model, StorageUris, WorkerSpec, PodSpec] must be specified in "
    "PredictorSpec"
)


# -------------------------------------------------------------------------------------
# The CRD
# -------------------------------------------------------------------------------------


class InferenceServiceSchema:
    """The v1beta1 openAPIV3Schema of KServe's InferenceService CRD, compiled."""

    def __init__(self, crd: Mapping[str, Any]) -> None:
        from jsonschema import Draft4Validator  # type: ignore[import-untyped]

        versions = crd["spec"]["versions"]
        version = next(v for v in versions if v["name"] == "v1beta1")
        self.schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
        self.names: dict[str, Any] = dict(crd["spec"]["names"])
        self.printer_columns: list[dict[str, Any]] = list(
            version.get("additionalPrinterColumns") or []
        )
        self._validator: Any = Draft4Validator(self.schema)

    # -- strictness -------------------------------------------------------------------

    def unknown_fields(self, obj: Mapping[str, Any]) -> list[str]:
        """Paths of the fields the structural schema does not declare, as kube-apiserver
        names them (``spec.predictor.containers[0].foo``); ``status`` is exempt."""
        found: list[str] = []
        properties = self.schema.get("properties", {})
        for key, value in obj.items():
            if key == "status":
                continue
            if key == "metadata":
                if isinstance(value, Mapping):
                    found.extend(f"metadata.{k}" for k in value if k not in OBJECT_META_FIELDS)
                continue
            if key not in properties:
                found.append(key)
                continue
            _unknown(value, properties[key], key, found)
        return sorted(found)

    # -- defaulting -------------------------------------------------------------------

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Fill in the schema's ``default`` values where the object omits them."""
        _defaults(obj, self.schema)

    # -- validation -------------------------------------------------------------------

    def violations(self, obj: Mapping[str, Any]) -> list[Cause]:
        """The schema's complaints, as kube-apiserver words them."""
        causes = [_cause(error) for error in self._validator.iter_errors(obj)]
        unique = {(c.field, c.reason, c.message): c for c in causes}
        return sorted(unique.values(), key=lambda c: (c.field, c.message))


_lock = threading.Lock()
_loaded: InferenceServiceSchema | None = None


def inference_service_schema() -> InferenceServiceSchema:
    """The CRD's schema, parsed on first use and kept for the process."""
    global _loaded
    with _lock:
        if _loaded is None:
            import yaml

            from llmops.testing.upstream import upstream_schema

            with upstream_schema(CRD_FILE).open("rb") as stream:
                crd = yaml.load(stream, Loader=yaml.CSafeLoader)
            _loaded = InferenceServiceSchema(crd)
        return _loaded


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown(value: Any, schema: Mapping[str, Any], path: str, found: list[str]) -> None:
    if isinstance(value, dict):
        if schema.get("type") not in (None, "object"):
            return  # a type error: validation reports it
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, item in value.items():
            child = _join(path, str(key))
            if properties is not None and key in properties:
                _unknown(item, properties[key], child, found)
            elif isinstance(additional, dict):
                _unknown(item, additional, child, found)
            elif additional is True or preserve:
                continue
            else:
                found.append(child)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _unknown(item, items, f"{path}[{index}]", found)


def prune(obj: dict[str, Any], paths: Iterable[str]) -> None:
    """Drop the fields at ``paths`` (as :meth:`InferenceServiceSchema.unknown_fields`
    names them) from ``obj``: what kube-apiserver does under ``fieldValidation=Warn``."""
    for path in paths:
        parts = re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
        node: Any = obj
        steps = [key if key else int(index) for key, index in parts]
        for step in steps[:-1]:
            node = node[step]
        del node[steps[-1]]


def _defaults(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is not None:
                _defaults(item, sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                _defaults(item, items)


def _field(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text


def _go(value: Any) -> str:
    """A value as Go's %v/%q prints it in kube-apiserver's messages (near enough)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _cause(error: Any) -> Cause:
    path = list(error.absolute_path)
    field = _field(path)
    kind = error.validator
    expected = error.validator_value
    value = error.instance
    if kind == "required":
        missing = [k for k in expected if isinstance(value, dict) and k not in value]
        return Cause("FieldValueRequired", "Required value", _field([*path, *missing[:1]]))
    if kind == "type":
        actual = _json_type(value)
        return Cause(
            "FieldValueTypeInvalid",
            f'Invalid value: "{actual}": {field} in body must be of type {expected}: "{actual}"',
            field,
        )
    if kind == "anyOf":  # int-or-string
        actual = _json_type(value)
        return Cause(
            "FieldValueTypeInvalid",
            f'Invalid value: "{actual}": {field} in body must be of type integer or string: '
            f'"{actual}"',
            field,
        )
    if kind == "enum":
        supported = ", ".join(_go(v) for v in expected)
        return Cause(
            "FieldValueNotSupported",
            f"Unsupported value: {_go(value)}: supported values: {supported}",
            field,
        )
    words = {
        "minimum": f"should be greater than or equal to {expected}",
        "maximum": f"should be less than or equal to {expected}",
        "pattern": f"should match '{expected}'",
        "minLength": f"should be at least {expected} chars long",
        "maxLength": f"should be at most {expected} chars long",
        "minItems": f"should have at least {expected} items",
        "maxItems": f"should have at most {expected} items",
    }
    if kind in words:
        return Cause(
            "FieldValueInvalid",
            f"Invalid value: {_go(value)}: {field} in body {words[kind]}",
            field,
        )
    return Cause("FieldValueInvalid", f"Invalid value: {_go(value)}: {error.message}", field)


# -------------------------------------------------------------------------------------
# Object metadata and type (kube-apiserver's own validation)
# -------------------------------------------------------------------------------------


def check_type_meta(obj: Mapping[str, Any]) -> list[Cause]:
    """apiVersion and kind; raises 400 when either is missing (the decoder's answer)."""
    for key in ("kind", "apiVersion"):
        if not obj.get(key):
            raise bad_request(
                f"Object '{key[0].upper()}{key[1:]}' is missing in "
                f"'{json.dumps(obj, separators=(',', ':'))[:2000]}'"
            )
    if obj["apiVersion"] != API_VERSION:
        raise bad_request(
            f"the API version in the data ({obj['apiVersion']}) does not match the expected "
            f"API version ({API_VERSION})"
        )
    if obj["kind"] != KIND:
        return [
            Cause("FieldValueInvalid", f"Invalid value: {_go(obj['kind'])}: must be {KIND}", "kind")
        ]
    return []


def check_metadata_types(metadata: Mapping[str, Any]) -> None:
    """The ObjectMeta decoder's type checks (400): string maps, string lists, strings."""
    for key in ("labels", "annotations"):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                f"ObjectMeta.metadata.{key} of type map[string]string"
            )
        for item in value.values():
            if not isinstance(item, str):
                raise bad_request(
                    f"json: cannot unmarshal {_json_type(item)} into Go struct field "
                    f"ObjectMeta.metadata.{key} of type string"
                )
    finalizers = metadata.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise bad_request(
            "json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers of "
            "type []string"
        )
    for key in ("name", "generateName", "namespace", "resourceVersion", "uid"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise bad_request(
                f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                f"ObjectMeta.metadata.{key} of type string"
            )


def _subdomain_problem(value: str) -> str | None:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def _qualified_name_problems(key: str) -> list[str]:
    problems: list[str] = []
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix:
        problem = _subdomain_problem(prefix)
        if problem is not None:
            problems.append(f"prefix part {problem}")
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return problems


def check_metadata(metadata: Mapping[str, Any]) -> list[Cause]:
    """ObjectMeta validation (422 causes): name, labels, annotations, finalizers."""
    causes: list[Cause] = []
    name = metadata.get("name") or ""
    if not name:
        causes.append(
            Cause(
                "FieldValueRequired",
                "Required value: name or generateName is required",
                "metadata.name",
            )
        )
    else:
        problem = _subdomain_problem(name)
        if problem is not None:
            causes.append(
                Cause(
                    "FieldValueInvalid", f"Invalid value: {_go(name)}: {problem}", "metadata.name"
                )
            )
    for key, value in (metadata.get("labels") or {}).items():
        for problem in _qualified_name_problems(key):
            causes.append(
                Cause(
                    "FieldValueInvalid", f"Invalid value: {_go(key)}: {problem}", "metadata.labels"
                )
            )
        if len(value) > 63:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_go(value)}: must be no more than 63 characters",
                    "metadata.labels",
                )
            )
        elif not _LABEL_VALUE.fullmatch(value):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_go(value)}: a valid label must be an empty string or "
                    "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    "metadata.labels",
                )
            )
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        for problem in _qualified_name_problems(str(key).lower()):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_go(key)}: {problem}",
                    "metadata.annotations",
                )
            )
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        causes.append(
            Cause(
                "FieldValueTooLong",
                f"Too long: must have at most {_ANNOTATIONS_MAX_BYTES} bytes",
                "metadata.annotations",
            )
        )
    for index, finalizer in enumerate(metadata.get("finalizers") or []):
        for problem in _qualified_name_problems(finalizer):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_go(finalizer)}: {problem}",
                    f"metadata.finalizers[{index}]",
                )
            )
    return causes


# -------------------------------------------------------------------------------------
# KServe's validating webhook
# -------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_webhook(obj: Mapping[str, Any]) -> None:
    """What KServe's InferenceService validator refuses (403), in its order; plus two
    rules the double applies at admission where a real cluster fails later (a name too
    long for the Knative service, a canary percentage Knative refuses)."""
    name = str(obj["metadata"].get("name", ""))
    if not ISVC_NAME.fullmatch(name) or len(name) > 63:
        raise forbidden_by_webhook(
            f'the InferenceService "{name}" is invalid: a InferenceService name must consist '
            "of lower case alphanumeric characters or '-', and must start with alphabetical "
            f'character. (e.g. "my-name" or "abc-123", regex used for validation is '
            f"'{_ISVC_NAME_FMT}')" + (" and be at most 63 characters" if len(name) > 63 else "")
        )
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    model = predictor.get("model")
    if isinstance(model, dict) and model.get("name"):
        raise forbidden_by_webhook("the 'name' field is not allowed in standard predictor")
    for component in ("predictor", "transformer", "explainer"):
        part = spec.get(component)
        if not isinstance(part, dict):
            continue
        if component == "predictor":
            count = sum(1 for key, _ in _PREDICTOR_FIELDS if part.get(key) is not None)
            if part.get("containers"):
                count += 1
            if count != 1:
                raise forbidden_by_webhook(_EXACTLY_ONE)
        minimum = _int(part.get("minReplicas"))
        maximum = _int(part.get("maxReplicas")) or 0
        effective_min = 1 if minimum is None else minimum
        if effective_min < 0:
            raise forbidden_by_webhook("'MinReplicas' cannot be less than 0")
        if maximum < 0:
            raise forbidden_by_webhook("'MaxReplicas' cannot be less than 0")
        if effective_min > maximum and maximum != 0:
            raise forbidden_by_webhook("'MinReplicas' cannot be greater than MaxReplicas")
        concurrency = _int(part.get("containerConcurrency"))
        if concurrency is not None and concurrency < 0:
            raise forbidden_by_webhook("parallelism cannot be less than 0")
        canary = _int(part.get("canaryTrafficPercent"))
        if canary is not None and not 0 <= canary <= 100:
            raise forbidden_by_webhook(
                f'the InferenceService "{name}" is invalid: canaryTrafficPercent must be '
                f"between 0 and 100, got {canary}"
            )


@dataclass(frozen=True)
class Admission:
    """An object that passed admission, and the warnings to send with it."""

    obj: dict[str, Any]
    warnings: tuple[str, ...] = ()


def admit(
    obj: dict[str, Any],
    *,
    field_validation: str,
    status_only: bool = False,
    webhook: bool = True,
) -> Admission:
    """Run ``obj`` (owned by the caller, changed in place) through decoding strictness,
    defaulting and validation. ``status_only``: a write through ``/status``, whose
    unknown fields outside status were dropped already and which KServe's webhook does
    not see.

    :raises ApiStatusError: 400, 422 or 403 as kube-apiserver answers.
    """
    schema = inference_service_schema()
    warnings: list[str] = []
    if not isinstance(obj.get("metadata"), dict):
        if obj.get("metadata") is None:
            obj["metadata"] = {}
        else:
            raise bad_request(
                f"json: cannot unmarshal {_json_type(obj['metadata'])} into Go struct field "
                "InferenceService.metadata of type v1.ObjectMeta"
            )
    unknown = [] if status_only else schema.unknown_fields(obj)
    if unknown:
        if field_validation == "Strict":
            raise bad_request(
                "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
            )
        prune(obj, unknown)
        if field_validation == "Warn":
            warnings.extend(f'unknown field "{p}"' for p in unknown)
    check_metadata_types(obj["metadata"])
    schema.apply_defaults(obj)
    causes = check_type_meta(obj) + check_metadata(obj["metadata"]) + schema.violations(obj)
    if causes:
        raise invalid(str(obj["metadata"].get("name") or ""), causes)
    if webhook and not status_only:
        check_webhook(obj)
    return Admission(obj=obj, warnings=tuple(warnings))


__all__ = [
    "CRD_FILE",
    "Admission",
    "ApiStatusError",
    "InferenceServiceSchema",
    "admit",
    "inference_service_schema",
]
