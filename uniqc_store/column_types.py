"""Column types shared by the models and the migrations.

On MySQL/MariaDB key and indexed columns become ``VARCHAR(255)`` with a
binary utf8mb4 collation (ids compare exactly, as on SQLite and PostgreSQL)
and payloads become ``LONGTEXT``; every other engine sees TEXT. Released
migrations use these names, so change them only together with a new revision.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.types import TypeEngine

_MYSQL = ("mysql", "mariadb")

#: Ids, statuses, backends and indexed timestamps: TEXT, or VARCHAR(255) on MySQL.
KeyText: TypeEngine[str] = Text().with_variant(String(255, collation="utf8mb4_bin"), *_MYSQL)
#: JSON payloads and free text: TEXT, or LONGTEXT (4 GiB) on MySQL.
PayloadText: TypeEngine[str] = Text().with_variant(LONGTEXT(collation="utf8mb4_bin"), *_MYSQL)

#: Column ``info`` flag: on SQLite render the primary key without NOT NULL,
#: as the reference's ``task_id TEXT PRIMARY KEY`` does.
SQLITE_NULLABLE_PK = "uniqc_sqlite_nullable_pk"

MYSQL_TABLE_ARGS: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
}


@compiles(CreateColumn, "sqlite")
def _sqlite_column_spec(element: CreateColumn, compiler: DDLCompiler, **kw: Any) -> str:
    spec = str(compiler.visit_create_column(element, **kw))  # type: ignore[no-untyped-call]
    if element.element.info.get(SQLITE_NULLABLE_PK):
        spec = spec.replace(" NOT NULL", "")
    return spec
