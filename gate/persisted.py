"""Persisted documents: automatic persisted queries (APQ: a client sends the SHA-256 of a
document and the document itself only when the server does not know it yet, under
`extensions.persistedQuery`) and trusted documents (the `.graphql` files of a folder, by
hash, loaded at start; in trusted-documents-only mode nothing else runs)."""

import hashlib
from collections import OrderedDict
from pathlib import Path

# The documents the frontends use (graphql_queries/ beside the packages).
DEFAULT_TRUSTED_DIR = Path(__file__).resolve().parent.parent / "graphql_queries"


class PersistedQueryError(Exception):
    """The request's persisted-query part cannot be honoured. `request_error`: a GraphQL
    request error (status by media type); else a malformed HTTP request (always 400)."""

    def __init__(self, code: str, message: str, request_error: bool = True) -> None:
        super().__init__(message)
        self.code, self.request_error = code, request_error


def sha256_hex(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def load_manifest(directory: Path) -> dict[str, str]:
    """hash -> document for every `*.graphql` file of `directory` (none when it is missing)."""
    if not directory.is_dir():
        return {}
    return {sha256_hex(text): text for text in (path.read_text() for path in sorted(directory.glob("*.graphql")))}


class DocumentStore:
    """The documents clients registered through APQ: least recently used first out, bounded by
    their total size so that registrations cannot grow memory without limit."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self.documents: OrderedDict[str, str] = OrderedDict()

    def get(self, sha256: str) -> str | None:
        document = self.documents.get(sha256)
        if document is not None:
            self.documents.move_to_end(sha256)
        return document

    def put(self, sha256: str, document: str) -> None:
        if sha256 in self.documents or len(document) > self.max_bytes:
            return
        self.documents[sha256] = document
        self.size += len(document)
        while self.size > self.max_bytes:
            _, evicted = self.documents.popitem(last=False)
            self.size -= len(evicted)


class PersistedDocuments:
    def __init__(self, manifest: dict[str, str], trusted_only: bool, apq_bytes: int) -> None:
        self.manifest, self.trusted_only = manifest, trusted_only
        self.registered = DocumentStore(apq_bytes)

    def document(self, query: str | None, extensions: dict | None) -> str | None:
        """The document to run: `query`, or the one `extensions.persistedQuery` names. None
        when there is neither (the caller reports the missing query)."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            if query is not None and self.trusted_only and sha256_hex(query) not in self.manifest:
                raise self.not_trusted()
            return query
        sha256 = self.checked_hash(persisted)
        if query is None:
            found = self.manifest.get(sha256) or (None if self.trusted_only else self.registered.get(sha256))
            if found is None:
                raise PersistedQueryError("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
            return found
        if sha256_hex(query) != sha256:
            raise PersistedQueryError("BAD_REQUEST", "provided sha does not match query", request_error=False)
        if sha256 not in self.manifest:
            if self.trusted_only:
                raise self.not_trusted()
            self.registered.put(sha256, query)
        return query

    @staticmethod
    def checked_hash(persisted) -> str:
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError("BAD_REQUEST", "Unsupported persisted query version; use 1.", request_error=False)
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise PersistedQueryError(
                "BAD_REQUEST", "`persistedQuery.sha256Hash` must be 64 hexadecimal digits.", request_error=False
            )
        return sha256.lower()

    @staticmethod
    def not_trusted() -> PersistedQueryError:
        return PersistedQueryError(
            "DOCUMENT_NOT_TRUSTED", "This server runs only its trusted documents; this document is not one of them."
        )
