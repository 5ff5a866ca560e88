"""Backups: the database and every stored object, verified, incremental, restorable.

``stolentee backup create --to TARGET`` writes one backup; ``list``, ``verify``, ``prune`` and
``restore`` work on a target's backups. A target holds::

    backups/<id>/database.<sqlite3|pgdump>   the database, as one consistent snapshot
    backups/<id>/manifest.json               written last: a backup without one is incomplete
    objects/<sha256[:2]>/<sha256>            every object's bytes, stored once by content

Objects are content-addressed, so a backup copies only objects no earlier backup of the target
holds (incremental), a killed backup's objects are reused by the next run, and pruning deletes
only objects no remaining manifest names. See docs/disaster-recovery.md.
"""
