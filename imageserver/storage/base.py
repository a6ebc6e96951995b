"""The storage contract. Local disk always holds a cache of what the server uses; a Store is where
images are kept for good and shared by many servers (S3, Manta), or nowhere (`NoRemoteStore`).

Paths given to a Store are remote paths with forward slashes, such as
`images/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg` (see `paths.ImageKey.remote_file`).
Backends turn their vendor's errors into `errors.NotFound` (no such object), `errors.StoreError` (the
store refused or failed: 502) and `errors.Unavailable` (it cannot be reached, or asks to slow down:
503), after their own retries; a bad combination of settings is a `SettingsError` from the constructor.
"""
from __future__ import annotations

import builtins
from abc import ABC, abstractmethod


class Store(ABC):
    @abstractmethod
    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        """Store the local file at `remote_path`, creating its folders where the store needs it."""

    @abstractmethod
    def get(self, remote_path: str, local_path: str) -> None:
        """Copy the object to `local_path` (whole, or not at all); NotFound when there is none."""

    @abstractmethod
    def list(self, remote_folder: str) -> list[str]:
        """The names of the objects directly in the folder; [] when the folder does not exist."""

    @abstractmethod
    def make_folder(self, remote_folder: str) -> None:
        """Create the folder and its parents where the store has folders; otherwise nothing."""

    @abstractmethod
    def delete(self, remote_path: str) -> None:
        """Remove the object; nothing when there is none (a purge may be done twice)."""

    @abstractmethod
    def exists(self, remote_path: str) -> bool:
        """True when the object is there (one small request: the purge's tombstone check)."""

    @abstractmethod
    def remove_folder(self, remote_folder: str) -> None:
        """Remove the folder, which must be empty, where the store has folders; otherwise nothing.
        A folder that is gone already, or that holds something again, is left as it is."""

    def url(self, remote_path: str, base_url: str) -> str:
        """The public URL of an object, from --remote_base_url."""
        return f"{base_url.rstrip('/')}/{remote_path}" if base_url else remote_path

    def problems(self) -> builtins.list[str]:   # `list` in this class is the method above
        """What stops the store from working now (for doctor); empty when it answers."""
        return []

    def describe(self) -> str:
        """What doctor says of a store that answers."""
        return f"{type(self).__name__} answers"


class WrappedStore(Store):
    """A store around another: everything is the wrapped store's, but what a subclass adds (the
    timing of transfers, the tombstone check of a purge)."""

    def __init__(self, store: Store):
        self.store = store

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        self.store.put(local_path, remote_path, content_type)

    def get(self, remote_path: str, local_path: str) -> None:
        self.store.get(remote_path, local_path)

    def list(self, remote_folder: str) -> builtins.list[str]:
        return self.store.list(remote_folder)

    def make_folder(self, remote_folder: str) -> None:
        self.store.make_folder(remote_folder)

    def delete(self, remote_path: str) -> None:
        self.store.delete(remote_path)

    def exists(self, remote_path: str) -> bool:
        return self.store.exists(remote_path)

    def remove_folder(self, remote_folder: str) -> None:
        self.store.remove_folder(remote_folder)

    def url(self, remote_path: str, base_url: str) -> str:
        return self.store.url(remote_path, base_url)

    def problems(self) -> builtins.list[str]:
        return self.store.problems()

    def describe(self) -> str:
        return self.store.describe()
