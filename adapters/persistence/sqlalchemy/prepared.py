"""Core statements compiled once per dialect and then executed as their SQL text (issue 12).

The accept path's statements are few and fixed, and SQLAlchemy's per-call work around them - building the
statement, its cache key, the ORM execution layers, parameter processing - cost many times the database's
own execution. A `Prepared` statement is compiled once per dialect; each call applies the columns' own bind
and result processors (UtcDateTime, ExactDecimal, Boolean: the same conversions SQLAlchemy would apply) and
runs the SQL on the DBAPI cursor of the connection's transaction (`on_driver`).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool
    # The rendered names, in the order the driver takes them (positional), or by name.
    names: tuple[str, ...]
    # Per bind, in that order: the caller's key and the value if the caller gives none (the statement's own
    # value: a LIMIT, a constant), or _REQUIRED.
    sources: tuple[tuple[str, Any], ...]
    # (position, conversion) of the binds whose type converts the value; identity conversions are left out.
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]
    row: type | None  # a namedtuple of the result columns, None for a statement that returns none
    results: tuple[Processor, ...]


class Prepared:
    """One statement; `columns`: an INSERT's columns (the keys of every `params` given with it)."""

    def __init__(self, statement: Executable, columns: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._columns = list(columns) if columns is not None else None
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Runs it with `params`; its result rows, each a named tuple of processed values."""
        compiled = self._compiled(connection.dialect)
        if compiled.row is None:
            on_driver(connection, compiled.sql, _parameters(compiled, params))
            return []
        found = on_driver(connection, compiled.sql, _parameters(compiled, params), rows=True)
        make, processors = compiled.row, compiled.results
        if not any(processors):  # identity conversions only (ids, text): the driver's row as it is
            return [make(*row) for row in found]
        return [
            make(
                *[value if process is None else process(value) for value, process in zip(row, processors, strict=True)]
            )
            for row in found
        ]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any | None:
        found = self.rows(connection, params)
        return found[0] if found else None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> None:
        compiled = self._compiled(connection.dialect)
        on_driver(connection, compiled.sql, _parameters(compiled, params))

    def execute_many(self, connection: Connection, many: Sequence[Mapping[str, Any]]) -> None:
        """One executemany for all of `many` (one round trip on drivers that batch it)."""
        if not many:
            return
        compiled = self._compiled(connection.dialect)
        parameters: Any = [_parameters(compiled, params) for params in many]
        on_driver(connection, compiled.sql, parameters, many=True)

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            with self._lock:
                found = self._by_dialect.get(dialect.name) or _compile(self._statement, self._columns, dialect)
                self._by_dialect[dialect.name] = found
        return found


def _compile(statement: Executable, columns: list[str] | None, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=columns)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    if compiled.positional:
        names: Sequence[str] = compiled.positiontup or ()
    else:
        names = list(by_name)
    binds: list[BindParameter[Any]] = [by_name[name] for name in names]
    sources = tuple((bind.key, _REQUIRED if bind.required else bind.value) for bind in binds)
    conversions = tuple(
        (position, process)
        for position, bind in enumerate(binds)
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    made: type | None = None
    results: tuple[Processor, ...] = ()
    # A SELECT's columns, or an INSERT's RETURNING ones.
    returned = list(getattr(statement, "selected_columns", None) or getattr(statement, "_returning", None) or ())
    if returned:
        made = _row_type([column.key for column in returned])
        results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned)
    return _Compiled(compiled.string, compiled.positional, tuple(names), sources, conversions, made, results)


def _row_type(fields: list[str]) -> type:
    return namedtuple("Row", fields)  # type: ignore[misc]  # mypy wants a literal name and fields


_REQUIRED: Any = object()  # a bind without a value of its own: the caller must give one


def _parameters(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
    """The driver's parameters for `params`: each bind's value (the caller's, else the statement's own),
    converted by its type. Its loops are the plainest Python can run: an accept converts ~150 values (issue 12)."""
    get = params.get
    values = [get(key, own) for key, own in compiled.sources]
    if _REQUIRED in values:
        missing = next(key for (key, _own), value in zip(compiled.sources, values, strict=True) if value is _REQUIRED)
        raise KeyError(f"no value for {missing!r}")  # as SQLAlchemy would: never a silent NULL
    for position, process in compiled.conversions:
        values[position] = process(values[position])
    if compiled.positional:
        return tuple(values)
    return dict(zip(compiled.names, values, strict=True))


def on_driver(connection: Connection, sql: str, parameters: Any = (), *, many: bool = False, rows: bool = False) -> Any:
    """Runs `sql` on a DBAPI cursor of `connection`, in the transaction it is in; the rows when `rows`.

    `Connection.exec_driver_sql` spent a third of an accept's CPU around the driver's own call (an execution
    context, result metadata, a CursorResult per statement; issue 12). What of it qbsync relies on is kept
    here: the `before_cursor_execute` listeners still see every statement (the tests and benches count
    statements with them), and a driver error is wrapped as SQLAlchemy would (a DBAPIError subclass, the
    connection invalidated on a disconnect), so the unit of work still tells an outage from a bad statement.
    """
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None  # `connection.connection` revalidates an invalidated one
    cursor = dbapi_connection.cursor()
    try:
        dispatch = connection.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, many)
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        return cursor.fetchall() if rows else None
    except connection.dialect.loaded_dbapi.Error as error:
        raise _wrapped(connection, error, sql, parameters, cursor) from error
    finally:
        cursor.close()


def _wrapped(connection: Connection, error: Any, sql: str, parameters: Any, cursor: Any) -> sa_exc.StatementError:
    dialect = connection.dialect
    invalidated = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if invalidated:
        # As SQLAlchemy does: the pool discards this connection (and, for a disconnect, the ones opened
        # before it) instead of handing it out again.
        connection.invalidate(error)
    return sa_exc.DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=connection.engine.hide_parameters,
        dialect=dialect,
        connection_invalidated=invalidated,
    )
