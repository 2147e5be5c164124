"""List endpoints: filters, page tokens and pages computed from indices, never full scans
unless a filter on a non-date field forces one."""

import base64
import bisect
import hashlib
import heapq
import re
from dataclasses import dataclass
from datetime import datetime

import orjson

from .data import DATE_GETTERS, Dataset

MAX_LIMIT = 1000
MAX_LIST_VALUES = 100  # longer comma lists get 422 (API.md §5)
# Every record's clocks; base values are monotonic in the index, so filters on them are ranges.
DATE_FIELDS = frozenset(DATE_GETTERS)
# SKILL:trackstar documents these on every list; the 2025 OAS does not declare them.
TRACKSTAR_DATE_FILTERS = ("trackstar_created_date", "trackstar_updated_date")
_PARAM = re.compile(r"^([a-z_]+)(?:\[([a-z_-]+)\])?$")


class ListError(Exception):
    def __init__(self, message: str, detail: dict) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class FieldSpec:
    ops: frozenset[str]  # "" is the bare `field=v` form, meaning eq
    kind: str  # "date", "bool" or "str"


def load_filter_specs(spec: dict, paths: dict[str, str]) -> dict[str, dict[str, FieldSpec]]:
    """Allowed filters per resource, read from the query parameters openapi.json declares."""
    out = {}
    for res, path in paths.items():
        fields: dict[str, set[str]] = {}
        kinds: dict[str, str] = {}
        for param in spec["paths"][path]["get"].get("parameters", []):
            if param["in"] != "query":
                continue
            m = _PARAM.match(param["name"])
            if not m:
                continue
            name, op = m.group(1), m.group(2) or ""
            if name in ("limit", "page_token", "ids"):
                continue
            fields.setdefault(name, set()).add(op)
            schema = param.get("schema", {})
            schema = schema.get("items", schema)
            if schema.get("format") == "date-time":
                kinds[name] = "date"
            elif schema.get("type") == "boolean":
                kinds[name] = "bool"
        out[res] = {
            name: FieldSpec(frozenset(ops), kinds.get(name, "str")) for name, ops in fields.items()
        }
        # Same operators as created_date (SKILL:trackstar-sync).
        for name in TRACKSTAR_DATE_FILTERS:
            out[res].setdefault(name, FieldSpec(out[res]["created_date"].ops, "date"))
    return out


def parse_date_ms(value: str) -> int:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    if dt.tzinfo is None:
        raise ValueError("naive")
    return int(dt.timestamp() * 1000)


@dataclass
class Query:
    filters: list[tuple[str, str, object]]  # (field, op, parsed value)
    date_fields: frozenset[str]  # non-base fields whose values are dates (parsed to ms)
    limit: int
    cursor: int
    ids: list[str] | None
    fingerprint: str


def parse_query(params: list[tuple[str, str]], fields: dict[str, FieldSpec]) -> Query:
    errors: dict[str, list[str]] = {}
    filters = []
    limit = MAX_LIMIT
    page_token = None
    ids = None
    for key, raw in params:
        if key == "limit":
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
                errors[key] = [f"Must be an integer between 1 and {MAX_LIMIT}."]
            else:
                limit = int(raw)
            continue
        if key == "page_token":
            page_token = raw
            continue
        if key == "ids[in]":
            ids = [v for v in raw.split(",") if v]
            if len(ids) > MAX_LIST_VALUES:
                errors[key] = [f"At most {MAX_LIST_VALUES} values."]
            continue
        m = _PARAM.match(key)
        spec = fields.get(m.group(1)) if m else None
        if spec is None:
            errors[key] = ["Unknown field."]
            continue
        op = m.group(2) or ""
        if op not in spec.ops:
            errors[key] = [f"Unknown operator {op!r} for {m.group(1)}."]
            continue
        op = op or "eq"
        try:
            filters.append((m.group(1), op, _parse_value(op, raw, spec.kind)))
        except ValueError as e:
            errors[key] = [str(e)]
    if errors:
        raise ListError("Invalid query parameters.", {"query": errors})
    fingerprint = hashlib.sha256(
        orjson.dumps(sorted((f, o, str(v)) for f, o, v in filters))
    ).hexdigest()[:12]
    cursor = 0
    if page_token and ids is None:
        cursor = _decode_token(page_token, fingerprint)
    date_fields = frozenset(n for n, s in fields.items() if s.kind == "date") - DATE_FIELDS
    return Query(filters, date_fields, limit, cursor, ids, fingerprint)


def _parse_value(op: str, raw: str, kind: str) -> object:
    many = op.startswith(("in", "nin"))
    values = raw.split(",") if many else [raw]
    if many and len(values) > MAX_LIST_VALUES:
        raise ValueError(f"At most {MAX_LIST_VALUES} values.")
    parsed: list[object] = []
    for v in values:
        if kind == "date":
            try:
                parsed.append(parse_date_ms(v))
            except ValueError:
                raise ValueError(f"Not an ISO 8601 date-time with a timezone: {v!r}.") from None
        elif kind == "bool":
            if v.lower() not in ("true", "false"):
                raise ValueError("Must be true or false.")
            parsed.append(v.lower() == "true")
        else:
            parsed.append(v)
    return parsed if many else parsed[0]


def encode_token(cursor: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([cursor, fingerprint])).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> int:
    try:
        cursor, token_fp = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = int(cursor)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ListError(
            "Invalid page_token.", {"query": {"page_token": ["Not a token we issued."]}}
        ) from None
    if token_fp != fingerprint:
        # Every page must repeat the filters (API.md §5).
        raise ListError(
            "page_token does not match these filters.",
            {"query": {"page_token": ["Repeat the same filters on every page."]}},
        )
    return cursor


def _match(value: object, op: str, target: object) -> bool:
    if op == "eq":
        return value == target
    if op == "neq":
        return value != target
    if op == "in":
        return value in target  # type: ignore[operator]
    if op == "nin":
        return value not in target  # type: ignore[operator]
    if value is None:
        return False
    if op == "gt":
        return value > target  # type: ignore[operator]
    if op == "gte":
        return value >= target  # type: ignore[operator]
    if op == "lt":
        return value < target  # type: ignore[operator]
    if op == "lte":
        return value <= target  # type: ignore[operator]
    text = str(value).lower()
    if op == "eq-insensitive":
        return text == str(target).lower()
    if op == "in-insensitive":
        return text in {str(t).lower() for t in target}  # type: ignore[union-attr]
    if op in ("contains", "contains-insensitive"):
        return str(target).lower() in text if "insensitive" in op else str(target) in str(value)
    if op == "not_contains":
        return str(target) not in str(value)
    return False


def _field_value(record: dict, name: str, date_fields: frozenset[str]) -> object:
    value = record.get(name)
    if name in date_fields and isinstance(value, str):
        return parse_date_ms(value)
    return value


def _narrow(lo: int, hi: int, key, op: str, target: int) -> tuple[int, int]:
    # Base dates are monotonic in the index, so a comparison is an index range.
    if op in ("gt", "gte"):
        pos = (bisect.bisect_right if op == "gt" else bisect.bisect_left)(
            range(hi), target, lo=lo, key=key
        )
        return pos, hi
    if op in ("lt", "lte"):
        pos = (bisect.bisect_left if op == "lt" else bisect.bisect_right)(
            range(hi), target, lo=lo, key=key
        )
        return lo, pos
    if op == "eq":
        return (
            bisect.bisect_left(range(hi), target, lo=lo, key=key),
            bisect.bisect_right(range(hi), target, lo=lo, key=key),
        )
    return lo, hi


def list_page(
    ds: Dataset,
    res: str,
    query: Query,
    scope: tuple[str, str] | None = None,
) -> bytes:
    """One page of the list envelope as JSON bytes. scope=(field, value) restricts to a parent."""
    if query.ids is not None:
        # ids[in] ignores every other parameter (OAS) — except the parent scope of the path.
        seen = []
        for record_id in dict.fromkeys(query.ids):
            i = ds.parse_id(res, record_id)
            if i is not None:
                seen.append(i)
        parts = []
        for i in seen:
            if scope is None or ds.record(res, i)[scope[0]] == scope[1]:
                parts.append(ds.render(res, i))
        return _envelope(parts, None)

    date_preds = [(f, o, v) for f, o, v in query.filters if f in DATE_FIELDS]
    field_preds = [(f, o, v) for f, o, v in query.filters if f not in DATE_FIELDS]
    if scope is not None:
        field_preds.append((scope[0], "eq", scope[1]))
    base_n = ds.counts[res]
    lo, hi = 0, base_n
    for field, op, target in date_preds:
        fn = DATE_GETTERS[field][0]
        lo, hi = _narrow(lo, hi, lambda i, fn=fn: fn(ds, res, i), op, target)  # type: ignore[arg-type]
    actual = [(DATE_GETTERS[f][1], o, v) for f, o, v in date_preds]
    mutated = ds.sorted_mutations(res)
    mut_set = ds.mut[res]
    start = max(lo, query.cursor)
    base_iter = range(start, hi)
    if mutated:
        base_iter = (i for i in base_iter if i not in mut_set)  # type: ignore[assignment]
        pos = bisect.bisect_left(mutated, query.cursor)
        candidates = heapq.merge(base_iter, mutated[pos:])
    else:
        candidates = iter(base_iter)

    parts: list[bytes] = []
    last = None
    has_more = False
    for i in candidates:
        if i in mut_set or actual:
            if not all(_match(fn(ds, res, i), o, v) for fn, o, v in actual):
                continue
        if field_preds:
            record = ds.record(res, i)
            if not all(
                _match(_field_value(record, f, query.date_fields), o, v) for f, o, v in field_preds
            ):
                continue
        if len(parts) == query.limit:
            has_more = True
            break
        parts.append(ds.render(res, i))
        last = i
    next_token = (
        encode_token(last + 1, query.fingerprint) if has_more and last is not None else None
    )
    return _envelope(parts, next_token)


def _envelope(parts: list[bytes], next_token: str | None) -> bytes:
    # total_count is "the number of items returned" per the OAS description.
    return b"".join(
        (
            b'{"data":[',
            b",".join(parts),
            b'],"next_token":',
            orjson.dumps(next_token),
            b',"total_count":',
            str(len(parts)).encode(),
            b"}",
        )
    )
