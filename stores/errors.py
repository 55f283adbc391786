"""The errors of the store library, rooted in :class:`StoreError`.

``stores`` imports no other package of the project, so its errors have a
root of their own. Each derives, where one fits, from the matching builtin
too (``StoreNotFoundError`` is a ``FileNotFoundError``), so a caller can
catch either. The layers above re-export them from :mod:`pipeline.errors`,
and the command line reports every ``StoreError`` as it reports a
:class:`pipeline.errors.PipelineError`: one line naming the URI and the fix.
"""

from __future__ import annotations


class StoreError(Exception):
    """A feature store cannot be opened, written or trusted."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """Nothing at the URI looks like a feature store."""


class StoreIncompleteError(StoreError):
    """The store's build did not finish (resume the build or pass --allow-incomplete)."""


class SchemaVersionError(StoreError):
    """The store was written by a newer schema version than this code reads."""


class ConfigMismatchError(StoreError, ValueError):
    """Two configurations that must agree do not (store vs build, checkpoint vs store)."""


class StoreAccessError(StoreError, PermissionError):
    """Object storage refused the credentials for a store URI (the message says where they come from)."""


class StoreConnectionError(StoreError, ConnectionError):
    """The server of a remote store URI cannot be reached (after the backend's own retries)."""


class CredentialError(StoreError, ValueError):
    """Credentials given as storage options cannot reach the worker processes that need them."""


class StoreDamageError(StoreError, ValueError):
    """Bytes of a store differ from what its build wrote (a checksum fails, an object is cut short,
    missing or unreadable); the message names the array, the shard and its clips, and the fix.

    ``array`` and ``shard`` are the damaged array's name and shard index where known (else "" and -1);
    ``key`` the damaged object's store key where known (a shard of a feature array extended with
    variants is several objects); ``problem`` what was found, without the store, the clips and the fix.
    """

    def __init__(self, message: str, *, array: str = "", shard: int = -1, problem: str = "", key: str = "") -> None:
        super().__init__(message)
        self.array = array
        self.shard = shard
        self.problem = problem or message
        self.key = key

    def __reduce__(self):
        return (_rebuild_damage, (str(self), self.array, self.shard, self.problem, self.key))


def _rebuild_damage(message: str, array: str, shard: int, problem: str, key: str = "") -> StoreDamageError:
    return StoreDamageError(message, array=array, shard=shard, problem=problem, key=key)
