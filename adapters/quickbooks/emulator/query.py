"""The subset of QBO's query language that python-quickbooks (and careful hand-written code) sends.

``SELECT * | COUNT(*) | f1, f2 FROM Entity [WHERE cond [AND cond]...] [ORDERBY|ORDER BY f [ASC|DESC], ...]
[STARTPOSITION n] [MAXRESULTS n]`` where ``cond`` is ``field (=|<|>|<=|>=|!=) value``, ``field IN (v, ...)``
or ``field LIKE 'pattern'`` (``%`` wildcards). There is no OR, just as in QBO.

Strings are single-quoted; ``\\'`` is a quote and ``\\\\`` a backslash. python-quickbooks escapes quotes but
not backslashes, so a backslash before any other character is kept literally rather than rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import QboFault, query_parse_error
from .shapes import JsonDict, now

DEFAULT_MAX_RESULTS = 100
LIMIT_MAX_RESULTS = 1000

# Name lists hide inactive records from queries unless the WHERE clause mentions Active.
NAME_LISTS = frozenset(
    {"Customer", "Vendor", "Employee", "Account", "Item", "PaymentMethod", "TaxCode", "TaxRate", "Class", "Department"}
)

# Filtering on an aggregate field compares its natural key: PrimaryEmailAddr = 'x' means its Address.
_AGGREGATE_KEYS = ("value", "Address", "FreeFormNumber", "URI")

Literal = str | Decimal | bool


@dataclass(frozen=True)
class Condition:
    """``field op value``; for IN, ``value`` is a tuple."""

    field: str
    op: str
    value: Literal | tuple[Literal, ...]


@dataclass
class Query:
    """A parsed SELECT."""

    entity: str
    count: bool = False
    fields: list[str] | None = None  # None means *
    where: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:\\.|[^'\\])*') |
        (?P<number>-?\d+(?:\.\d+)?) |
        (?P<op><=|>=|!=|<>|=|<|>) |
        (?P<punct>[(),*]) |
        (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body) and body[i + 1] in "'\\":
            out.append(body[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip().rstrip(";")
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise query_parse_error(f"Encountered unexpected text at column {position + 1}: {text[position:][:20]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, entity_names: Iterable[str]) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.entities = {name.lower(): name for name in entity_names}

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        """Consume the next token when it is one of ``words`` (case-insensitive)."""
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() in words:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1].upper() != value):
            found = token[1] if token else "end of query"
            raise query_parse_error(f'Encountered "{found}", was expecting {value or kind}')
        self.index += 1
        return token[1]

    def literal(self) -> Literal:
        token = self.peek()
        if token is None:
            raise query_parse_error("Encountered end of query, was expecting a value")
        self.index += 1
        kind, text = token
        if kind == "string":
            return _unescape(text[1:-1])
        if kind == "number":
            return Decimal(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise query_parse_error(f'Encountered "{text}", was expecting a value')

    def parse(self) -> Query:
        self.expect("word", "SELECT")
        count = False
        fields: list[str] | None = None
        if self.keyword("COUNT"):
            self.expect("punct", "(")
            self.expect("punct", "*")
            self.expect("punct", ")")
            count = True
        else:
            fields = []
            while True:
                token = self.peek()
                if token == ("punct", "*"):
                    self.index += 1
                    fields = None if fields == [] else fields
                elif token and token[0] == "word" and token[1].upper() != "FROM":
                    self.index += 1
                    if fields is not None:
                        fields.append(token[1])
                else:
                    raise query_parse_error("expected a field list")
                if self.peek() != ("punct", ","):
                    break
                self.index += 1
            # "SELECT *, Sku FROM Item" (what python-quickbooks sends for Item.all()) still means every field.
            if fields is not None and any(t == ("punct", "*") for t in self.tokens[: self.index]):
                fields = None
        self.expect("word", "FROM")
        raw_entity = self.expect("word")
        entity = self.entities.get(raw_entity.lower())
        if entity is None:
            raise QboFault("4001", "Invalid query", f"QueryValidationError: Entity {raw_entity} is not supported")
        query = Query(entity=entity, count=count, fields=fields)
        if self.keyword("WHERE"):
            query.where.append(self.condition())
            while self.keyword("AND"):
                query.where.append(self.condition())
            if self.keyword("OR"):
                raise query_parse_error('Encountered "OR": QBO queries do not support OR')
        if self.keyword("ORDERBY") or (self.keyword("ORDER") and self.expect("word", "BY")):
            while True:
                name = self.expect("word")
                descending = False
                if self.keyword("DESC"):
                    descending = True
                else:
                    self.keyword("ASC")
                query.order_by.append((name, descending))
                if self.peek() != ("punct", ","):
                    break
                self.index += 1
        if self.keyword("STARTPOSITION"):
            query.start_position = max(1, int(self.expect("number")))
        if self.keyword("MAXRESULTS"):
            # QBO caps page size at 1000 rather than failing; MAXRESULTS 0 is treated as the default.
            asked = int(self.expect("number"))
            query.max_results = min(asked, LIMIT_MAX_RESULTS) if asked > 0 else DEFAULT_MAX_RESULTS
        if self.peek() is not None:
            raise query_parse_error(f'Encountered "{self.peek()[1]}" at end of query')  # type: ignore[index]
        return query

    def condition(self) -> Condition:
        name = self.expect("word")
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.literal()]
            while self.peek() == ("punct", ","):
                self.index += 1
                values.append(self.literal())
            self.expect("punct", ")")
            return Condition(name, "IN", tuple(values))
        if self.keyword("LIKE"):
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise query_parse_error("LIKE needs a quoted pattern")
            return Condition(name, "LIKE", pattern)
        op = self.expect("op")
        return Condition(name, "!=" if op == "<>" else op, self.literal())


def parse_query(text: str, entity_names: Iterable[str]) -> Query:
    """Parse ``text``; raises ``QboFault`` 4000 (parse error) or 4001 (unknown entity)."""
    return _Parser(text, entity_names).parse()


def resolve(record: JsonDict, path: str) -> Any:
    """The value at a dotted path, an aggregate reduced to its key (``CustomerRef`` → its ``value``)."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        # Field names are case-sensitive in QBO's JSON but not in its query language.
        if part in value:
            value = value[part]
        else:
            lowered = {key.lower(): key for key in value}
            if part.lower() not in lowered:
                return None
            value = value[lowered[part.lower()]]
    if isinstance(value, dict):
        for key in _AGGREGATE_KEYS:
            if key in value:
                return value[key]
        return None
    return value


def _as_datetime(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=now().tzinfo)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Totally ordered key: numbers, then timestamps, then case-folded text; missing values last."""
    if value is None:
        return (9, "")
    if isinstance(value, bool):
        return (0, Decimal(int(value)))
    if isinstance(value, int | Decimal):
        return (0, Decimal(value))
    text = str(value)
    try:
        return (0, Decimal(text))
    except InvalidOperation:
        pass
    if re.match(r"^\d{4}-\d{2}-\d{2}T", text) and (moment := _as_datetime(text)):
        return (1, moment.timestamp())
    return (2, text.casefold())


def _compare(actual: Any, literal: Literal) -> int | None:
    """-1/0/1 comparing a record value with a query literal, or None when they cannot be compared."""
    if actual is None:
        return None
    if isinstance(literal, bool) or isinstance(actual, bool):
        actual_bool = actual if isinstance(actual, bool) else str(actual).lower() == "true"
        literal_bool = literal if isinstance(literal, bool) else str(literal).lower() == "true"
        return 0 if actual_bool == literal_bool else 1
    left, right = _sort_key(actual), _sort_key(literal)
    if 1 in (left[0], right[0]) and left[0] != right[0]:
        # A date-only literal ('2024-01-31') against a timestamp: compare as instants, midnight company time.
        left_moment, right_moment = _as_datetime(str(actual)), _as_datetime(str(literal))
        if left_moment and right_moment:
            left, right = (1, left_moment.timestamp()), (1, right_moment.timestamp())
    if right[0] != left[0]:
        # Mixed kinds (a number against text): compare as text, as QBO compares ids given as strings.
        left, right = (2, str(actual).casefold()), (2, str(literal).casefold())
    return (left[1] > right[1]) - (left[1] < right[1])


def _like(actual: Any, pattern: str) -> bool:
    if actual is None:
        return False
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("%")) + "$"
    return re.match(regex, str(actual), re.IGNORECASE | re.DOTALL) is not None


def matches(record: JsonDict, condition: Condition) -> bool:
    """Whether ``record`` satisfies ``condition``. Text equality ignores case (*guess*: QBO's name lookups
    are reported case-insensitive); a field the record lacks never matches."""
    actual = resolve(record, condition.field)
    if condition.op == "IN":
        assert isinstance(condition.value, tuple)
        return any(_compare(actual, value) == 0 for value in condition.value)
    if condition.op == "LIKE":
        assert isinstance(condition.value, str)
        return _like(actual, condition.value)
    assert not isinstance(condition.value, tuple)
    result = _compare(actual, condition.value)
    if result is None:
        return False
    return {
        "=": result == 0,
        "!=": result != 0,
        "<": result < 0,
        ">": result > 0,
        "<=": result <= 0,
        ">=": result >= 0,
    }[condition.op]


def run_query(query: Query, records: Iterable[JsonDict]) -> JsonDict:
    """The ``QueryResponse`` object for ``query`` over ``records`` (already in Id order)."""
    rows = list(records)
    if query.entity in NAME_LISTS and not any(c.field.lower() == "active" for c in query.where):
        rows = [row for row in rows if row.get("Active", True) is not False]
    rows = [row for row in rows if all(matches(row, condition) for condition in query.where)]
    if query.count:
        return {"totalCount": len(rows)}
    for name, descending in reversed(query.order_by):  # stable sorts, last key first
        rows.sort(key=lambda row, name=name: _sort_key(resolve(row, name)), reverse=descending)  # type: ignore[misc]
    page = rows[query.start_position - 1 : query.start_position - 1 + query.max_results]
    if query.fields is not None:
        wanted = {name.split(".")[0].lower() for name in query.fields} | {"id"}
        page = [
            {**{k: v for k, v in row.items() if k.lower() in wanted}, "domain": "QBO", "sparse": True} for row in page
        ]
    if not page:
        return {}  # QBO answers an empty result as an empty QueryResponse
    return {query.entity: page, "startPosition": query.start_position, "maxResults": len(page)}
