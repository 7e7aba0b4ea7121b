"""Where lsh_tune writes: atomic local writes and :class:`Storage`, one layer over ``pyarrow.fs``.

Ground floor: the standard library and pyarrow (imported lazily), and only
:mod:`lsh_tune.errors` from this package. Local writers go to a temporary file in the target's
directory, are flushed and fsynced, then ``os.replace``-d over the target, so a reader (or a
resume after a kill at any instant) sees the old or the new version, never a half-written one;
:class:`Storage` gives the same promise on object stores.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from urllib.parse import urlsplit

__all__ = ["Storage", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "is_uri"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a binary temp file beside ``path``, then atomically replace ``path``.

    Missing parent directories are created. On any exception the temp file is removed and
    ``path`` is left as it was; an ``OSError`` (full disk, unwritable directory) is raised as
    :class:`~lsh_tune.errors.LSHStorageError` naming ``path``.
    """
    path = Path(path)
    tmp, out = None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            out = _WriteErrors(f)
            write(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        err = _storage_error(e, str(path), out)
        if err is e:
            raise
        raise err from e


class _WriteErrors:
    """A binary stream that remembers the first ``OSError`` its ``write`` raised (everything else is
    forwarded): ``torch.save`` reports a full disk as a ``RuntimeError`` of its own."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _storage_error(e: BaseException, where: str, out: _WriteErrors | None = None) -> BaseException:
    """An ``OSError`` of a write (full disk, unwritable or vanished storage) — raised, or seen by the
    stream ``out`` under another exception — as an :class:`~lsh_tune.errors.LSHStorageError` naming
    the file; anything else unchanged."""
    from lsh_tune.errors import LSHStorageError

    if isinstance(e, LSHStorageError):
        return e
    if not isinstance(e, OSError):
        if out is None or out.error is None:
            return e
        e = out.error
    err = LSHStorageError(f"cannot write {where}: {e.strerror or e}; its previous version is intact (nothing was "
                          "half-written): make the storage writable, then run the same command with --resume")
    err.errno = e.errno
    return err


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(obj: Any, path: str | os.PathLike, **dumps_kwargs: Any) -> None:
    """Write ``obj`` as JSON atomically (default: ``indent=2, sort_keys=True``)."""
    kwargs = {"indent": 2, "sort_keys": True, **dumps_kwargs}
    atomic_write_text(path, json.dumps(obj, **kwargs))


_CHUNK = 8 * 2**20  # bytes per read/write when streaming a file


def _is_temporary(name: str) -> bool:
    """A write in progress (``atomic_write``'s ``.<name>.*.tmp``, ``Storage``'s ``.tmp-*``)."""
    return name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp"))


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: Schemes :mod:`pyarrow.fs` opens: ``<scheme>:`` without ``//`` is refused rather than taken for a local directory.
_KNOWN_SCHEMES = ("file", "local", "mock", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
#: Schemes whose URI names a bucket (the others name a host).
_BUCKET_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")


def is_uri(location: str | os.PathLike, what: str = "storage_path") -> bool:
    """Whether ``location`` is an object-store URI (``True``) or a local directory (``False``, also
    ``file://...``), parsed strictly and without I/O, so no URI is ever taken for a local path.

    Raises:
        LSHUsageError: naming ``what`` and the value: a URI whose scheme is not one
            (``runs/a://b``), whose bucket or host is missing (``s3://``, ``s3:///prefix``), or
            a known scheme without ``//`` (``s3:bucket``, ``s3:/bucket``; ``./s3:/bucket`` is a
            local directory).
    """
    from lsh_tune.errors import LSHUsageError

    location = os.fspath(location)
    base = location.split("?", 1)[0]
    scheme, sep, _ = base.partition("://")
    if not sep:
        head = base.split(":", 1)[0]
        if ":" in base and head.lower() in _KNOWN_SCHEMES:
            raise LSHUsageError(f"{what}={location!r} is not a URI ({head}: needs //): write "
                                f"{head}://{'BUCKET' if head.lower() in _BUCKET_SCHEMES else 'HOST'}/prefix, or "
                                f"./{location} for a local directory of that name")
        return False
    if not _SCHEME.fullmatch(scheme):
        raise LSHUsageError(f"{what}={location!r} is not a URI ({scheme!r} is not a scheme) nor a directory; "
                            "use a directory or a URI such as s3://bucket/prefix")
    if scheme.lower() == "file":
        return False
    if not urlsplit(base).netloc:
        kind = "bucket" if scheme.lower() in _BUCKET_SCHEMES else "host"
        raise LSHUsageError(f"{what}={location!r} names no {kind}; write {scheme}://{kind.upper()}/prefix")
    return True


#: The access probe (:meth:`Storage.check_access`) fails in seconds on an object store that does not
#: answer: seconds to connect, seconds without progress on a request, and attempts per request.
PROBE_CONNECT_TIMEOUT_S = 2.0
PROBE_REQUEST_TIMEOUT_S = 3.0  # seconds without a byte moving (not the whole request)
PROBE_ATTEMPTS = 2
#: What an object store's error means, by the codes in its text (first match wins).
_CAUSES = (
    (("NETWORK_CONNECTION", "curlCode", "Could not resolve host", "Couldn't connect", "Connection refused",
      "Timeout was reached"), "endpoint unreachable"),
    (("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist"), "no such bucket"),
    (("INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch",
      "EXPIRED_TOKEN", "ExpiredToken", "INVALID_TOKEN", "InvalidToken", "No credentials"),
     "credentials refused (missing, unknown or wrong access key)"),
    (("ACCESS_DENIED", "AccessDenied", "Access Denied", "HTTP status 403", "Forbidden"),
     "access denied (the credentials lack this right, or none were found)"),
)


def _cause(e: BaseException, endpoint: str | None = None) -> str:
    """An object-store error as one line: what it means (:data:`_CAUSES`; an unreachable endpoint
    named when known), then its own first line in brackets (without the request id)."""
    text = " ".join(str(e).split("\n", 1)[0].split())
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", re.sub(r"^When [^:]*: ", "", text)).rstrip(" .") or type(e).__name__
    for codes, meaning in _CAUSES:
        if any(code in str(e) for code in codes):
            if meaning == "endpoint unreachable" and endpoint:
                meaning = f"endpoint {endpoint} unreachable"
            return f"{meaning} [{text}]"
    return text


class Storage:
    """A storage root — a POSIX directory (local disk, NFS) or an object-store prefix — and its
    :mod:`pyarrow.fs` filesystem (the layer Ray Tune itself uses).

    Every path handed to a method is *relative* to the root, ``/``-separated; a part that is
    empty, ``.`` or ``..``, or an absolute path, is refused so no name escapes the root.
    Writes are all-or-nothing: on a local root a temp file beside the target is fsynced and
    ``os.replace``-d; on an object store the bytes go to a temporary key that is then moved onto
    the target key (a reader sees the old object or the new one, never a part). Large files
    stream (:meth:`write_with`, :meth:`upload`, :meth:`download`, :meth:`local_file`); an
    append-only log is one small file per record (:meth:`append_record`, :meth:`read_records`),
    the same layout on every backend.

    Args:
        location: a directory (``~`` expanded, made absolute) or a URI pyarrow understands:
            ``file:///dir``, ``s3://bucket/prefix`` (endpoint by ``AWS_ENDPOINT_URL`` or
            ``?endpoint_override=http://HOST:PORT&scheme=http``), ``gs://…``, ``hdfs://…``.

    >>> import tempfile; s = Storage(tempfile.mkdtemp())
    >>> s.write_json("a/b.json", {"x": 1}); s.read_json("a/b.json")
    {'x': 1}
    """

    def __init__(self, location: str | os.PathLike) -> None:
        import pyarrow.fs as pafs

        from lsh_tune.errors import LSHUsageError

        location = os.fspath(location)
        if not location:
            raise LSHUsageError("storage_path='' is empty; give a directory or a URI such as s3://bucket/prefix")
        if is_uri(location):
            try:
                self.fs, root = pafs.FileSystem.from_uri(location)
            except ValueError as e:  # pyarrow.ArrowInvalid: a URI it cannot parse
                raise LSHUsageError(f"storage_path={location!r} is not a usable URI ({_cause(e)}); use a directory "
                                    "or s3://bucket/prefix, gs://bucket/prefix, hdfs://host/path") from None
            except OSError as e:  # the store is asked at once (an S3 bucket's region): unreachable, refused
                raise LSHUsageError(f"storage_path={location!r} cannot be opened: {_cause(e)}") from None
            self.root = root.rstrip("/")
            self.uri = location
            self.local_root: Path | None = None
        else:
            path = location[len("file://"):] if location.startswith("file://") else location
            self.local_root = Path(os.path.expanduser(path)).resolve()
            self.fs = pafs.LocalFileSystem()
            self.root = str(self.local_root)
            self.uri = str(self.local_root)

    @classmethod
    def of(cls, location: "Storage | str | os.PathLike") -> "Storage":
        """``location`` itself if it is a :class:`Storage`, else ``Storage(location)``."""
        return location if isinstance(location, Storage) else cls(location)

    @classmethod
    def split(cls, location: str | os.PathLike) -> tuple["Storage", str]:
        """A file's location (path or URI, query kept) as (the storage of its directory, its name)."""
        from lsh_tune.errors import LSHUsageError

        location = os.fspath(location)
        if not is_uri(location, "location"):
            path = Path(os.path.expanduser(location[len("file://"):] if location.startswith("file://") else location))
            return cls(str(path.resolve().parent)), path.name
        base, sep, query = location.partition("?")
        if not urlsplit(base).path.strip("/"):
            raise LSHUsageError(f"location={location!r} names a bucket or host, not a file in it")
        parent, _, name = base.rstrip("/").rpartition("/")
        return cls(parent + sep + query), name

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def __reduce__(self):
        return (Storage, (self.uri,))

    @property
    def is_local(self) -> bool:
        """True for a POSIX directory (local disk or NFS)."""
        return self.local_root is not None

    # ------------------------------------------------------------------ paths
    @staticmethod
    def _parts(rel: str) -> list[str]:
        from lsh_tune.errors import LSHUsageError

        rel = os.fspath(rel)
        if rel in ("", "."):
            return []
        parts = rel.replace(os.sep, "/").split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise LSHUsageError(f"path {rel!r} must be relative to the storage root without '', '.' or '..' "
                                "parts (names may not escape the storage path)")
        return parts

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (``root/rel``)."""
        return "/".join([self.root, *self._parts(rel)]) if rel not in ("", ".") else self.root

    def local_path(self, rel: str = "") -> Path | None:
        """``rel`` as a local :class:`~pathlib.Path` (``None`` on an object store)."""
        return None if self.local_root is None else self.local_root.joinpath(*self._parts(rel))

    def child(self, rel: str) -> "Storage":
        """The storage rooted at ``rel``."""
        if self.local_root is not None:
            return Storage(str(self.local_path(rel)))
        base, _, query = self.uri.partition("?")
        joined = "/".join([base.rstrip("/"), *self._parts(rel)])
        return Storage(joined + (f"?{query}" if query else ""))

    # ------------------------------------------------------------------ reads
    def exists(self, rel: str = "") -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def read_bytes(self, rel: str) -> bytes:
        """The whole object. Raises ``FileNotFoundError`` naming the full path when absent."""
        if not self.is_file(rel):
            raise FileNotFoundError(f"{self.uri_of(rel)} does not exist")
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_text(rel))

    def listdir(self, rel: str = "", *, recursive: bool = False) -> list[str]:
        """Sorted paths of the files under ``rel``, relative to ``rel`` (``[]`` when absent)."""
        import pyarrow.fs as pafs

        base = self.path(rel)
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
        return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File
                      and not _is_temporary(i.path.rsplit("/", 1)[-1]))

    def uri_of(self, rel: str = "") -> str:
        """A human-readable location of ``rel`` for messages."""
        if self.local_root is not None:
            return str(self.local_path(rel))
        base = self.uri.partition("?")[0].rstrip("/")
        return "/".join([base, *self._parts(rel)])

    @contextlib.contextmanager
    def local_file(self, rel: str) -> Iterator[Path]:
        """A local path holding ``rel`` for the ``with`` block: the file itself on a POSIX root, a
        temporary download (removed afterwards) on an object store.

        Raises:
            FileNotFoundError: ``rel`` does not exist (naming its full location).
        """
        if self.local_root is not None:
            path = self.local_path(rel)
            if not path.is_file():
                raise FileNotFoundError(f"{self.uri_of(rel)} does not exist")
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="lsh-storage-") as d:
            yield self.download(rel, Path(d) / rel.rsplit("/", 1)[-1])

    def read_records(self, rel: str) -> list[dict]:
        """Every record :meth:`append_record` added to the log ``rel``, oldest first (``[]`` if none)."""
        return [self.read_json(f"{rel}/{name}") for name in self.listdir(rel) if name.endswith(".json")]

    # ----------------------------------------------------------------- access
    def check_access(self) -> None:
        """On an object store, write, read back and delete a probe object directly under this root,
        with requests that fail in seconds (:data:`PROBE_CONNECT_TIMEOUT_S`, ...): what a search does
        to its storage, tried before it starts. Nothing to do on a local root (see
        :func:`lsh_tune.search.run.preflight.check_storage`).

        The probe is deleted again; a failed write writes nothing. (pyarrow keeps an emptied
        prefix as an empty directory marker, ``<root>/``.)

        Raises:
            LSHUsageError: one line naming the URI, the operation that failed (write, read back,
                delete) and the cause: endpoint unreachable, no such bucket, credentials refused,
                access denied, or the store's own message.
        """
        from lsh_tune.errors import LSHUsageError

        if self.local_root is not None:
            return
        fs, endpoint = self._probe_fs()
        name = f".lsh-probe-{uuid.uuid4().hex}"
        path, data = self.path(name), f"lsh_tune storage probe {name}\n".encode()
        op = "write"
        try:
            with fs.open_output_stream(path) as f:
                f.write(data)
            op = "read back"
            with fs.open_input_stream(path) as f:
                back = f.read()
            if back != data:
                raise OSError(f"read {len(back)} bytes that differ from the {len(data)} written")
            op = "delete"
            fs.delete_file(path)
            return
        except OSError as e:
            failure = _cause(e, endpoint)
        if op == "write":
            after = "; nothing was written"
        else:
            after = ""
            try:
                if op == "read back":  # written, not readable: take it away again
                    fs.delete_file(path)
                    after = "; the probe was deleted"
                else:
                    raise OSError
            except OSError:
                after = f"; the probe {self.uri_of(name)} is left behind"
        raise LSHUsageError(f"storage {self.uri_of()} is not usable: {op} of a probe object failed: {failure}{after}")

    def _probe_fs(self):
        """(this root's filesystem with :data:`PROBE_CONNECT_TIMEOUT_S`, :data:`PROBE_REQUEST_TIMEOUT_S`
        and :data:`PROBE_ATTEMPTS`, its endpoint) on S3; any other filesystem as it is, and ``None``."""
        import pyarrow.fs as pafs

        if not isinstance(self.fs, pafs.S3FileSystem):
            return self.fs, None
        try:
            options = dict(self.fs.__reduce__()[1][0])
            endpoint = options.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL") or "(AWS default)"
            options.update(connect_timeout=PROBE_CONNECT_TIMEOUT_S, request_timeout=PROBE_REQUEST_TIMEOUT_S,
                           retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=PROBE_ATTEMPTS))
            return pafs.S3FileSystem(**options), endpoint
        except (AttributeError, IndexError, TypeError, ValueError):  # another pyarrow: probe with the defaults
            return self.fs, None

    # ----------------------------------------------------------------- writes
    def write_with(self, rel: str, write: Callable[[IO[bytes]], Any]) -> None:
        """Call ``write(f)`` on a binary stream that becomes ``rel`` all-or-nothing (see the class
        docstring); streams, so a large state never has to fit in memory twice."""
        if self.local_root is not None:
            atomic_write(self.local_path(rel), write)
            return
        target = self.path(rel)
        parent, _, name = target.rpartition("/")
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex}"
        out = None
        try:
            with self.fs.open_output_stream(tmp) as f:
                out = _WriteErrors(f)
                write(out)
            self.fs.move(tmp, target)
        except BaseException as e:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            err = _storage_error(e, self.uri_of(rel), out)
            if err is e:
                raise
            raise err from e

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` all-or-nothing (see the class docstring)."""
        self.write_with(rel, lambda f: f.write(data))

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str, obj: Any, **dumps_kwargs: Any) -> None:
        """``obj`` as JSON (default ``indent=1``; non-finite floats as ``Infinity``/``NaN``)."""
        self.write_text(rel, json.dumps(obj, **{"indent": 1, **dumps_kwargs}))

    def append_record(self, rel: str, record: dict) -> None:
        """Add ``record`` (JSON) to the log ``rel``: one file per record, ``rel/<time_ns>-<random>.json``.

        Many writers on many nodes may append at once on every backend (an object store has no
        append, and NFS clients do not serialise ``O_APPEND`` with each other); names sort by
        wall-clock time, which is the order :meth:`read_records` returns.
        """
        self.write_json(f"{rel}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json", record, indent=None)

    def append_bytes(self, rel: str, data: bytes) -> None:
        """Append ``data`` to the file ``rel`` of a local root (created if absent): one ``write`` on an
        ``O_APPEND`` descriptor, then ``fsync``, so an append costs its own bytes, not the file's (a log
        kept this way is written in linear time).

        Not all-or-nothing like the writers above: a kill inside the ``write`` can leave a torn tail
        (part of ``data``, no newline), which a reader of such a log skips and reports
        (:func:`lsh_tune.search.views.events.read_event_file`). A write that fails (full disk) is cut back
        off, leaving the file as it was, and raised as :class:`~lsh_tune.errors.LSHStorageError`.

        Raises:
            LSHUsageError: the root is an object store, where nothing can be appended (rewrite the
                object with :meth:`write_bytes`; :class:`~lsh_tune.search.views.events.EventLog` batches).
        """
        from lsh_tune.errors import LSHUsageError

        if self.local_root is None:
            raise LSHUsageError(f"cannot append to {self.uri_of(rel)}: an object store has no append; rewrite "
                                "the object (Storage.write_bytes)")
        path = self.local_path(rel)
        fd, start = None, None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            start = os.fstat(fd).st_size
            view = memoryview(data)
            while view:  # one write for any log record; a short write (at a size limit) is continued
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as e:
            if fd is not None and start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
            err = _storage_error(e, str(path))
            if err is e:
                raise
            raise err from e
        finally:
            if fd is not None:
                os.close(fd)

    def upload(self, local: str | os.PathLike, rel: str) -> None:
        """Copy the local file ``local`` to ``rel`` (all-or-nothing, streamed)."""
        with open(local, "rb") as src:
            self.write_with(rel, lambda f: shutil.copyfileobj(src, f, _CHUNK))

    def download(self, rel: str, local: str | os.PathLike) -> Path:
        """Copy ``rel`` to the local file ``local`` (all-or-nothing, streamed); returns ``Path(local)``.

        Raises:
            FileNotFoundError: ``rel`` does not exist (naming its full location).
        """
        if not self.is_file(rel):
            raise FileNotFoundError(f"{self.uri_of(rel)} does not exist")
        with self.fs.open_input_stream(self.path(rel)) as src:
            atomic_write(local, lambda f: shutil.copyfileobj(src, f, _CHUNK))
        return Path(local)

    def delete(self, rel: str) -> None:
        """Remove the file or directory ``rel`` (nothing if absent)."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))
