"""Statements for hot paths: compiled once per dialect, run on the driver's cursor.

The job queue runs four short statements per job. Through SQLAlchemy's ORM (or even Core's
``execute``) each costs several times what the driver itself does: session and execution
context, compiled-cache key, result metadata, ORM rows. A :class:`PreparedStatement` is a Core
statement compiled once for each dialect it meets; running it binds the parameters through the
columns' own bind processors (the very values SQLAlchemy would send), executes the SQL on the
DB-API cursor of the caller's :class:`~sqlalchemy.engine.Connection`, inside that connection's
transaction, and converts the returned columns with their result processors.

What a normal execution does and this keeps:

* the transaction is SQLAlchemy's (``engine.begin()``: begin, commit, rollback, pool checkout
  and return, and their events);
* the engine's ``before_cursor_execute`` / ``after_cursor_execute`` events run around every
  statement, so the query watchdog (``db.engine``), the metrics' query timer and statement
  counters in tests and benchmarks see these statements like any other;
* a driver error goes through the connection's own error handling: the ``handle_error`` event
  (query timeout, ``DatabaseUnavailableError``), invalidation of a lost connection, and the
  usual wrapping in :class:`sqlalchemy.exc.DBAPIError`.

What it skips: compilation and its cache, the execution context and result objects, echo
logging and the dialect's ``do_execute`` events (neither is used here).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.expression import Executable, ReturnsRows

__all__ = ["PreparedStatement"]

Row = tuple[Any, ...]
_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: bool
    # Per parameter in the order the SQL wants them: (name, bind processor, constant). A
    # constant (a literal of the statement, like ``state = 'queued'``) is processed once.
    binds: tuple[tuple[str, _Processor, bool, Any], ...]
    results: tuple[_Processor, ...]  # per returned column
    convert: bool  # any result processor at all

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        processed: list[Any] = []
        for name, proc, is_constant, constant in self.binds:
            if is_constant:
                processed.append(constant)
            else:
                value = values[name]
                processed.append(value if proc is None else proc(value))
        if self.positional:
            return tuple(processed)
        return {bind[0]: value for bind, value in zip(self.binds, processed, strict=True)}

    def row(self, raw: Sequence[Any]) -> Row:
        if not self.convert:
            return tuple(raw)
        return tuple(
            value if proc is None else proc(value)
            for proc, value in zip(self.results, raw, strict=True)
        )


class PreparedStatement:
    """A Core statement (``UPDATE ... RETURNING``, ``SELECT``) run with :meth:`rows`.

    ``columns`` are the names of the returned columns, in order (empty without RETURNING).
    Thread-safe; shared by every engine (one compiled form per dialect object).
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self.columns: tuple[str, ...] = (
            tuple(str(c.key) for c in statement.exported_columns)
            if isinstance(statement, ReturnsRows)
            else ()
        )
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compile(dialect)
            self._compiled[dialect] = compiled  # a race only compiles twice
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.escaped_bind_names:
            raise ValueError("bind parameter names must need no escaping")
        positional = bool(dialect.positional)
        names = list(compiled.positiontup) if positional else list(compiled.binds)
        binds: list[tuple[str, _Processor, bool, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            if bind.expanding or bind.literal_execute or bind.callable is not None:
                raise ValueError(f"bind parameter {name!r}: expanding/literal/callable binds")
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                binds.append((name, proc, False, None))
            else:
                value = bind.value
                binds.append((name, None, True, value if proc is None else proc(value)))
        results: tuple[_Processor, ...] = ()
        if isinstance(self.statement, ReturnsRows):
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.exported_columns
            )
        return _Compiled(
            sql=compiled.string,
            positional=positional,
            binds=tuple(binds),
            results=results,
            convert=any(proc is not None for proc in results),
        )

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[Row]:
        """Run in ``conn``'s transaction (begun: ``engine.begin()``); every returned row."""
        if not conn.in_transaction():
            raise RuntimeError("a prepared statement runs inside a begun transaction")
        compiled = self._for(conn.dialect)
        statement, parameters = compiled.sql, compiled.parameters(values)
        cursor = conn.connection.cursor()
        try:
            dispatch = conn.dispatch
            for before in dispatch.before_cursor_execute:
                statement, parameters = before(conn, cursor, statement, parameters, None, False)
            cursor.execute(statement, parameters)
            # (psycopg builds cursor.description anew on each access: ask the statement instead)
            raw = cursor.fetchall() if compiled.results else []
            dispatch.after_cursor_execute(conn, cursor, statement, parameters, None, False)
        except BaseException as exc:
            # The connection's own handling: handle_error (watchdog, unavailable database),
            # invalidation of a lost connection, DBAPIError wrapping. It always raises.
            conn._handle_dbapi_exception(exc, statement, parameters, cursor, None)
            raise  # not reached
        cursor.close()
        return [compiled.row(row) for row in raw]

    def first(self, conn: Connection, values: Mapping[str, Any]) -> Row | None:
        """:meth:`rows`, first row or ``None``."""
        found = self.rows(conn, values)
        return found[0] if found else None
