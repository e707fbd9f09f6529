"""Small private helpers shared by several modules (atomic writes, hashing, seeding)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import tempfile
import time
import warnings
from pathlib import Path
from typing import IO, Iterator

# mkstemp creates files as 0600; results are ordinary files, so give them the usual mode (0666 minus umask).
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

# Temporaries are named ".<name>.~<host>-<pid>.<random><suffix>" so that the next save of the same file can
# tell a temporary left by a killed writer (SIGKILL, power loss: no ``finally`` ran) from one a live writer
# is still filling: stale when its process is gone on this host, or when it is older than STALE_AFTER_S.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_OWNER = re.compile(r"~(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.")
STALE_AFTER_S = 24 * 3600


def _prefix(label: str) -> str:
    return f".{label}.~{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left behind by interrupted atomic writes; return what was removed.

    Called by every atomic write before it starts, so a save killed mid-way leaves its temporary only until
    the next save of the same file. A temporary whose writer is still running is never touched.
    """
    path = Path(path)
    removed = []
    for label in {path.name, path.stem}:
        for tmp in path.parent.glob(f".{_glob_escape(label)}.~*"):
            if _is_stale(tmp):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
    if removed:
        warnings.warn(f"removed {len(removed)} temporary file(s) left by an interrupted save of {path}: "
                      f"{[p.name for p in removed]}.", stacklevel=3)
    return removed


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _is_stale(tmp: Path) -> bool:
    match = _OWNER.search(tmp.name)
    if match is None or not tmp.is_file():
        return False
    try:
        age = time.time() - tmp.stat().st_mtime
    except FileNotFoundError:
        return False
    if match["host"] == _HOST and not _alive(int(match["pid"])):
        return True
    return age > STALE_AFTER_S


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` only if the block succeeds.

    Readers never see a half-written file; on error the temporary file is removed and the old
    ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary path beside ``path`` for libraries that insist on writing by file name.

    The file is moved over ``path`` only if the block succeeds (see :func:`atomic_write`).
    """
    return _atomic_path(Path(path))


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.stem), suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (a phrase to put after the path), or ``None`` when it can be
    opened for reading as far as ``stat`` can tell.

    Tells apart what "no such file" would hide: a folder, a symbolic link loop or to nothing, a FIFO/socket/device
    (opening a FIFO blocks until someone writes to it), and a folder above the file that this user may not enter.
    Whether the file itself is readable is found by opening it (catch ``PermissionError`` there: ``os.access`` is
    wrong for root and for ACLs).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "is a symbolic link to a missing file" if os.path.islink(path) else "does not exist"
    except PermissionError:
        return "cannot be reached: a folder above it does not let this user in (permission denied)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (the link leads back to itself)"
        return f"is not a usable path ({exc.strerror or exc})"
    except ValueError as exc:  # an embedded NUL byte
        return f"is not a usable path ({exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, socket or device), so it is not read"
    return None


PERMISSION_HINT = ("this user may not read it. Ask its owner for read access (e.g. chmod u+r) or copy it somewhere "
                   "you can read.")
WRITE_HINT = ("check that the folder exists and that this user may write there (permissions, a read-only disk, "
              "free space), or choose another path.")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sample_dir() -> Path:
    """The shipped ``data_samples/`` folder (``$XAIKIT_SAMPLES`` overrides it)."""
    env = os.environ.get("XAIKIT_SAMPLES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data_samples"
