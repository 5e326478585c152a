"""``bioprune download``: fetch real data sets from their canonical URLs, verified by pinned sha256.

The registry (``config/datasets.yaml``) names every file the real-data configs read, as a path under the
data folder (``bprna_ss/TR0.dbn.gz``), with the URL it comes from, the sha256 of that download, how the
file is made from it (``derive``) and the sha256 of the file's content (decompressed when it is .gz, so
a copy gzipped by another tool still verifies). A download goes to a temporary name in its own folder,
is checked, and only then renamed into place: a bad checksum or a broken connection leaves no file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import logging
import shutil
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from bioprune.atomic import atomic_path
from bioprune.derive import deb_member, stockholm_to_fasta, zip_member
from bioprune.errors import BiopruneError, ConfigError

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "config" / "datasets.yaml"
SOURCES = ".sources"  # downloaded archives, kept under the data folder so a rerun reuses them
DERIVES = ("copy", "zip_member", "deb_member", "stockholm_fasta")
_CHUNK = 1 << 20


class DownloadError(BiopruneError):
    """A download failed or did not match its pinned checksum."""


@dataclass(frozen=True)
class DataFile:
    """One file the workflow reads, ``path`` relative to the data folder (``<data set>/<file>``)."""

    path: str
    url: str
    sha256: str  # of the download (of each part for multi-part sources)
    content_sha256: str  # of the file the workflow reads, decompressed when it ends in .gz
    derive: str = "copy"
    member: str | None = None
    gzip: bool = False
    parts: tuple[tuple[str, str], ...] = ()  # (part, sha256): the url has a {part} field

    def pin(self) -> str:
        """What fixes the file's bytes, in one short string (a workflow params value)."""
        parts = hashlib.sha256(repr(self.parts).encode()).hexdigest() if self.parts else ""
        return " ".join(
            filter(None, (self.url, self.sha256, parts, self.derive, self.member, self.content_sha256))
        )

    def urls(self) -> list[tuple[str, str]]:
        """(url, sha256) of every download this file is made from."""
        if self.parts:
            return [(self.url.replace("{part}", part), sha) for part, sha in self.parts]
        return [(self.url, self.sha256)]


def sha256_of(path: Path, *, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    with (gzip.open if decompress else open)(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256(path: Path, name: str | None = None) -> str:
    """sha256 of what a reader of ``path`` sees: the decompressed bytes of a .gz file (``name``: the file
    name that decides, for a temporary name)."""
    try:
        return sha256_of(path, decompress=(name or path.name).endswith(".gz"))
    except (OSError, EOFError) as exc:  # a truncated or non-gzip .gz
        return f"unreadable ({exc})"


def _check_sha(value, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{where}: a sha256 must be 64 lower-case hex digits, got {value!r}")
    return value


def _read_parts(path: Path, where: str) -> tuple[tuple[str, str], ...]:
    """``sha256  part`` lines (sha256sum's format) of a multi-part source's manifest."""
    parts = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            sha, _, part = line.partition("  ")
            parts.append((part.strip(), _check_sha(sha, f"{path}:{n}")))
    if not parts:
        raise ConfigError(f"{where}: the parts manifest {path} lists nothing")
    return tuple(parts)


def _data_file(path: str, spec: dict, registry: Path) -> DataFile:
    where = f"{registry}: {path}"
    unknown = set(spec) - {"url", "sha256", "content_sha256", "derive", "member", "gzip", "parts"}
    if unknown or "url" not in spec:
        raise ConfigError(f"{where}: needs url (and sha256 or parts); unknown keys {sorted(unknown)}")
    derive = spec.get("derive", "copy")
    if derive not in DERIVES:
        raise ConfigError(f"{where}: derive must be one of {', '.join(DERIVES)}, got {derive!r}")
    if derive.endswith("_member") != ("member" in spec):
        raise ConfigError(f"{where}: 'member' goes with derive zip_member or deb_member")
    parts = _read_parts(registry.parent / spec["parts"], where) if "parts" in spec else ()
    if bool(parts) != ("{part}" in spec["url"]) or bool(parts) == ("sha256" in spec):
        raise ConfigError(f"{where}: give sha256, or parts with a {{part}} field in the url")
    sha = _check_sha(spec["sha256"], where) if not parts else ""
    # The download itself is the content when it is copied (gzipped or not); otherwise it must be pinned.
    plain_copy = derive == "copy" and (spec.get("gzip") or not path.endswith(".gz"))
    if "content_sha256" not in spec and not (plain_copy and sha):
        raise ConfigError(f"{where}: content_sha256 (of the derived file, decompressed) is required")
    content = _check_sha(spec.get("content_sha256", sha), where)
    return DataFile(
        path, spec["url"], sha, content, derive, spec.get("member"), bool(spec.get("gzip")), parts
    )


def load_registry(path: Path | str = REGISTRY_PATH) -> dict[str, DataFile]:
    """``<data set>/<file>`` -> DataFile for every file of the registry YAML at ``path``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the data set registry: {exc}") from None
    files = {}
    for name, dataset in (raw or {}).get("datasets", {}).items():
        for file, spec in dataset.get("files", {}).items():
            files[f"{name}/{file}"] = _data_file(f"{name}/{file}", spec, path)
    if not files:
        raise ConfigError(f"{path}: the data set registry lists no files under 'datasets'")
    return files


def fetch(url: str, dest: Path, sha256: str, *, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` and verify its sha256; an existing ``dest`` that verifies is kept.

    The bytes go to a temporary name beside ``dest`` that is renamed only after the check, so a failed
    or mismatched download leaves nothing (and an earlier good file stays)."""
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        log.info("%s: present, sha256 verified; not downloaded again", dest)
        return dest
    log.info("downloading %s -> %s", url, dest)
    with atomic_path(dest) as tmp:
        digest, size, last = hashlib.sha256(), 0, time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if time.monotonic() - last > 10:
                        log.info("%s: %.1f MB so far", url, size / 1e6)
                        last = time.monotonic()
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            ValueError,
        ) as exc:
            raise DownloadError(f"{url}: download failed: {getattr(exc, 'reason', exc)}") from None
        if digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url}: checksum mismatch: expected sha256 {sha256}, got {digest.hexdigest()}"
                f" ({size} bytes); nothing was written to {dest}"
            )
    log.info("%s: %.2f MB, sha256 verified", dest, size / 1e6)
    return dest


def _source_path(data_dir: Path, item: DataFile, url: str) -> Path:
    """Where a download that still has to be derived is kept (reused by the data set's other files)."""
    return data_dir / SOURCES / item.path.split("/")[0] / url.rstrip("/").rsplit("/", 1)[-1]


def _write(item: DataFile, sources: list[Path], out: BinaryIO) -> None:
    if item.derive == "stockholm_fasta":
        import io

        text = io.TextIOWrapper(out, encoding="ascii", newline="\n")
        n = stockholm_to_fasta(sources, text)
        text.flush()
        text.detach()
        log.info("%s: %d sequences from %d Stockholm files", item.path, n, len(sources))
        return
    opener = {"zip_member": zip_member, "deb_member": deb_member}.get(item.derive)
    with opener(sources[0], item.member) if opener else open(sources[0], "rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)


def download(item: DataFile, data_dir: Path | str, *, timeout: float = 60) -> Path:
    """Make ``data_dir/item.path``: reuse it when its content verifies, else download and derive it."""
    data_dir = Path(data_dir)
    target = data_dir / item.path
    if target.is_file():
        actual = content_sha256(target)
        if actual == item.content_sha256:
            log.info("%s: present, content sha256 verified; nothing downloaded", target)
            return target
        log.warning("%s: content sha256 %s, expected %s: replacing it", target, actual, item.content_sha256)
    if item.derive == "copy" and not item.gzip:  # the download is the file itself
        return fetch(item.url, target, item.sha256, timeout=timeout)
    sources = [
        fetch(url, _source_path(data_dir, item, url), sha, timeout=timeout) for url, sha in item.urls()
    ]
    with atomic_path(target) as tmp:
        with ExitStack() as stack:
            raw = stack.enter_context(open(tmp, "wb"))
            # no name, mtime 0: the same content always gives the same .gz bytes
            gz = gzip.GzipFile("", "wb", 9, raw, mtime=0) if item.gzip else nullcontext(raw)
            _write(item, sources, stack.enter_context(gz))
        actual = content_sha256(tmp, target.name)
        if actual != item.content_sha256:
            raise DownloadError(
                f"{target}: derived from {item.url}, its content has sha256 {actual}, expected"
                f" {item.content_sha256}; nothing was written"
            )
    log.info("%s: derived (%s), content sha256 verified", target, item.derive)
    return target


def check_present(items: list[DataFile], data_dir: Path | str) -> list[str]:
    """A message for every file of ``items`` that is in ``data_dir`` but whose content does not verify.

    Missing files are not listed: the download rule makes them."""
    problems = []
    for item in items:
        path = Path(data_dir) / item.path
        if path.is_file() and (actual := content_sha256(path)) != item.content_sha256:
            problems.append(
                f"{path}: content sha256 {actual}, but {item.url} pins {item.content_sha256}"
                " (delete the file to download it again, or point data_dir at a good copy)"
            )
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="<data set>/<file> or a data set name")
    parser.add_argument("--data-dir", default="data", help="data folder (default: data)")
    parser.add_argument("--registry", default=str(REGISTRY_PATH), help="data set registry YAML")
    parser.add_argument("--timeout", type=float, default=60, help="seconds without data before giving up")
    parser.add_argument("--list", action="store_true", help="list the registry's files and exit")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)
    if args.list:
        for path, item in registry.items():
            print(f"{path}\t{item.url}")
        return 0
    if not args.files:
        raise ConfigError("name at least one <data set>/<file> or data set (--list shows them)")
    chosen = []
    for name in args.files:
        matches = [item for path, item in registry.items() if path == name or path.startswith(f"{name}/")]
        if not matches:
            raise ConfigError(f"{args.registry}: no data set or file {name!r} (--list shows them)")
        chosen += matches
    for item in chosen:
        download(item, args.data_dir, timeout=args.timeout)
    return 0
