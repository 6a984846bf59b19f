"""The schema layer: what a task database holds and what may be stored in it.

Column types (``types``), payload JSON (``payload``), the check of every value
(``values``), the Core tables (``tables``), the ORM models (``orm``, public as
``uniqc_store.models``), tolerant decoding of stored rows (``decoding``) and the
schema version facts (``versions``). It knows no engine and runs no statement
of its own; below it are only ``records``, ``errors``, ``timeouts`` and
``redaction``.
"""
