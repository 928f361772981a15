"""The media catalog's one schema and its queries: the `catalog` (SQLite) and `postgres`
sinks write it, `find` and `forge-syncctl find` read it.

`schema` lists the columns (name, kind, role, whether `find` returns it, whether full text
covers it) and the indexes; `dialect` says how each kind is typed and converted in SQLite
and in PostgreSQL; `query` is what a search asks; the `*_migrations` modules are each
database's frozen history, the `*_search` modules its search."""
