"""The database layer: URLs, engines, the SQLite specifics, the one door and the
executor that every statement of the package goes through.

``urls`` (which database, shown without secrets), ``drivers`` (the drivers'
bounds and install hints), ``engine`` (the engine factory), ``sqlite`` (the
transaction recipe and pragmas), ``sqlite_files`` (a file checked before it is
opened), ``door`` (no connection outside a unit), ``connections`` and
``executor`` (units of work, retries, bounds), ``direct`` (the unwatched fast
path), ``watchdog`` (client-side deadlines), ``translation`` (driver errors
made the store's), ``sessions`` (read-only ORM sessions through the door).
"""
