"""The reference's other APIs on top of the repository: ``ArchiveStore`` and the
legacy dict API ``TaskPersistence``."""
