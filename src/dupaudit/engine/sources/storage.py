"""Where sources live: local paths and fsspec URLs, one way to reach both.

Credentials and endpoints come from each filesystem's own configuration (for S3: the AWS environment variables
and config files, AWS_ENDPOINT_URL included), plus --storage-option KEY=VALUE. The cloud filesystems are the
`cloud` extra; fsspec itself is small and pure Python, so local shards and manifests need no extra.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import TypeVar

from ...errors import InputError, MissingExtraError

# Which package brings each URL scheme (all in the `cloud` extra), for the missing-extra message.
SCHEMES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hf": "huggingface_hub",
    "http": "aiohttp",
    "https": "aiohttp",
    "file": None,
    "local": None,
}
RETRIES = 4  # retries of a remote read after its first transient failure, before the item is reported unreadable
BACKOFF_S = 0.25  # first wait between attempts; doubled each time
T = TypeVar("T")


def is_url(target: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target) is not None


def parse_storage_options(pairs: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """KEY=VALUE strings, as given on the command line (values are parsed in filesystem())."""
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--storage-option {pair!r}: expected KEY=VALUE")
        options.append((key.strip(), value))
    return tuple(options)


def _value(text: str):
    """A storage option's value: JSON when it parses (true, 3, {"region_name": "x"}), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def filesystem(target: str, storage_options: tuple[tuple[str, str], ...] = ()):
    """(fsspec filesystem, path in its terms) for a local path or URL; one-line errors for what cannot be used."""
    import fsspec

    if not is_url(target):
        return fsspec.filesystem("file"), os.path.abspath(os.path.expanduser(target))
    scheme = target.split("://", 1)[0].lower()
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        known = ", ".join(f"{s}://" for s in SCHEMES if s not in ("local", "s3a", "gcs", "abfss"))
        raise InputError(f"{target}: unknown URL scheme {scheme}:// (dupaudit reads {known})") from None
    except ImportError:
        raise MissingExtraError("cloud", f"{scheme}:// URLs") from None
    try:
        fs, path = fsspec.core.url_to_fs(target, **{k: _value(v) for k, v in storage_options})
    except ImportError:
        raise MissingExtraError("cloud", f"{scheme}:// URLs") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{target}: {exc}") from None
    return fs, path


def unqualified(fs, path: str) -> str:
    """A path as the user would write it: a URL with its scheme, or a local absolute path."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return fs.unstrip_protocol(path)


def retrying(read: Callable[[], T], failed: BaseException | None = None) -> T:
    """Run a remote read, retrying transient network failures (connection errors, timeouts, HTTP 5xx and 429)
    up to RETRIES times with backoff (BACKOFF_S, doubled each time). `failed`: a first attempt made elsewhere
    (a batched read) already failed so.

    A missing object or a refusal is not transient: it is raised at once. The filesystems' own retries come
    first (s3fs retries throttling and some connection errors itself); fsspec's HTTP filesystem has none."""
    wait = BACKOFF_S
    retries = 0
    if failed is not None:
        if not _transient(failed) or isinstance(failed, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise failed
        time.sleep(wait)
        wait *= 2
        retries = 1
    while True:
        try:
            return read()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - network errors come in many types (aiohttp, botocore, OSError)
            if retries >= RETRIES or not _transient(exc):
                raise
            time.sleep(wait)
            wait *= 2
            retries += 1


def _transient(exc: BaseException) -> bool:
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) or "Timeout" in type(exc).__name__


def read_reason(exc: BaseException) -> str:
    """A one-line reason why bytes could not be read (a skipped item's reason)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status}" + (" (access denied)" if status in (401, 403) else "")
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"cannot read: {type(exc).__name__}" + (f": {text}" if text else "")


def version_of(fs, path: str, info: dict | None = None) -> str:
    """A container's version token: an object's ETag when the store gives one, else size and mtime."""
    info = info if info is not None else fs.info(path)
    for key in ("ETag", "etag", "md5Hash", "content_md5", "sha256", "oid"):
        if info.get(key):
            return f"{key}:{str(info[key]).strip(chr(34))}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("updated") or ""
    return f"{info.get('size')}:{mtime}"


_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Brace expansion as WebDataset shard lists use it: {000000..000099} (zero padding kept) and {a,b}."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") else 0
        step = 1 if int(last) >= int(first) else -1
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:
        return [pattern]
    return [expanded for choice in choices for expanded in expand_braces(head + choice + tail)]


def has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def find_files(target: str, storage_options: tuple[tuple[str, str], ...], extensions: tuple[str, ...]):
    """The files a target names, with their fsspec info, sorted: a file, a folder (searched recursively, hidden
    names skipped), a glob, or a brace range. Returns (fs, base folder for item ids, [(path, info)])."""
    fs, path = filesystem(target, storage_options)
    patterns = expand_braces(path)
    found: dict[str, dict] = {}
    base = None
    try:
        if len(patterns) == 1 and not has_glob(path) and _isdir(fs, path):
            base = path.rstrip("/")
            for name, info in retrying(lambda: fs.find(path, detail=True)).items():
                relative = name[len(base) :].lstrip("/")
                if info.get("type") != "directory" and _wanted(relative, extensions):
                    found[name] = info
        else:
            for pattern in patterns:
                if has_glob(pattern):
                    matches = retrying(lambda: fs.glob(pattern, detail=True))
                    found.update({n: i for n, i in matches.items() if i.get("type") != "directory"})
                else:
                    found[pattern] = retrying(lambda: fs.info(pattern))
    except FileNotFoundError:
        raise InputError(f"{target}: not found") from None
    except PermissionError:
        raise InputError(f"{target}: access denied (check the credentials)") from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be listed is an unusable source
        raise InputError(f"{target}: cannot list: {read_reason(exc)}") from None
    files = sorted(found.items())
    if base is None:
        folders = [name.rsplit("/", 1)[0] if "/" in name else "" for name, _ in files] or [path.rsplit("/", 1)[0]]
        base = os.path.commonpath(folders) if all(f.startswith("/") for f in folders) else _common(folders)
    return fs, base, files


def _isdir(fs, path: str) -> bool:
    try:
        return retrying(lambda: fs.isdir(path))
    except FileNotFoundError:
        return False


def _wanted(relative: str, extensions: tuple[str, ...]) -> bool:
    return relative.lower().endswith(extensions) and not any(part.startswith(".") for part in relative.split("/"))


def _common(folders: list[str]) -> str:
    parts = [f.split("/") for f in folders]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)


def relative_to(base: str, path: str) -> str:
    return path[len(base) :].lstrip("/") if base and path.startswith(base) else path
