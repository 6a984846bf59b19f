"""The repository layer: ``TaskStore`` and what it is made of.

``store`` (the public API), ``statements`` (every statement, built once per
dialect), ``archive`` (the moves between live and archived tables),
``transfer`` (export/import), ``changes`` (the change feed) and
``row_check`` (rows another tool wrote, checked as ``save()`` would).
"""
