"""haul: a fast, resumable bulk downloader and image crawler.

The engine is the one the ``haul`` command runs (one shared HTTP client,
per-host windows that adapt to each server, retries that honour
``Retry-After``, atomic writes, validated resume, a job state that makes
every job resumable); this module drives it from Python::

    import haul

    result = haul.download("urls.txt", "downloads", jobs=64)
    print(result.ok, "done,", result.failed, "failed")
    for o in result.outcomes():
        if o.status == "failed":
            print(o.url, o.reason)

Inputs are a URL, a path to a list or dataset (txt, CSV, TSV, JSONL,
parquet, compressed or not), an iterable of URLs or of dicts (rows), or a
pandas DataFrame or pyarrow Table. Run the same call again after an
interruption or a failure and it carries on where it stopped.

The work happens on threads of the engine's own, without the GIL. Ctrl-C
raises ``KeyboardInterrupt`` once the transfers in flight are parked, as
the command does; ``download_async`` and ``crawl_async`` do the same
without blocking an event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from haul import _haul
from haul._errors import ConfigError, HaulError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import pyarrow  # type: ignore[import-untyped,import-not-found,unused-ignore]

__all__ = [
    "ConfigError",
    "HaulError",
    "InputError",
    "Outcome",
    "Progress",
    "Result",
    "crawl",
    "crawl_async",
    "download",
    "download_async",
]

__version__: str = _haul.__version__

log = logging.getLogger("haul")

StrPath = Union[str, "os.PathLike[str]"]
"""A path: a string or a ``pathlib.Path``."""

Source = Union[
    str,
    "os.PathLike[str]",
    Iterable[str],
    Iterable[Mapping[str, Any]],
    "pandas.DataFrame",
    "pyarrow.Table",
]
"""What ``download`` reads URLs from: a URL, a path to a list or dataset,
an iterable of URLs or of rows (dicts), a DataFrame or an Arrow table."""


@dataclass(frozen=True)
class Progress:
    """The job's counters at one moment, as the progress callback gets
    them."""

    seen: int
    """Items read from the input so far."""
    input_done: bool
    """Whether the input has been read to the end (``seen`` is final)."""
    ok: int
    skipped: int
    failed: int
    bytes: int
    """Bytes received so far."""
    elapsed: float
    """Seconds since the job started."""
    hosts: Tuple[Tuple[str, int, int], ...] = ()
    """The busiest hosts: ``(host, transfers in flight, window)``."""

    @property
    def done(self) -> int:
        """Items finished, however they ended."""
        return self.ok + self.skipped + self.failed


@dataclass(frozen=True)
class Outcome:
    """How one item ended: one line of the manifest."""

    url: str
    status: str
    """``"ok"``, ``"skipped"`` or ``"failed"``."""
    path: Optional[str] = None
    """Where the file is, relative to the output directory."""
    http_status: Optional[int] = None
    bytes: int = 0
    sha256: Optional[str] = None
    attempts: int = 0
    reason: Optional[str] = None
    """Why it was skipped (``exists``, ``done``…) or the failure's group
    (``HTTP 404 Not Found``, ``timeout``…)."""
    error: Optional[str] = None
    input: str = ""
    line: int = 0
    note: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    """The manifest's other fields (``meta``, ``columns``, ``kind``,
    ``page``…)."""

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "Outcome":
        known = {
            "url",
            "status",
            "path",
            "http_status",
            "bytes",
            "sha256",
            "attempts",
            "reason",
            "error",
            "input",
            "line",
            "note",
        }
        return cls(
            url=d.get("url", ""),
            status=d.get("status", ""),
            path=d.get("path"),
            http_status=d.get("http_status"),
            bytes=d.get("bytes") or 0,
            sha256=d.get("sha256"),
            attempts=d.get("attempts") or 0,
            reason=d.get("reason"),
            error=d.get("error"),
            input=d.get("input") or "",
            line=d.get("line") or 0,
            note=d.get("note"),
            extra={k: v for k, v in d.items() if k not in known and k != "elapsed_ms"},
        )


class Result:
    """What a job did. The counts are this run's; ``outcomes()`` reads the
    manifest, one item at a time, so a job of millions of items does not
    hold them all in memory."""

    out: Union[Path, str]
    """The output directory, or the bucket URL (``"s3://…"``) as given."""
    ok: int
    skipped: int
    failed: int
    bad: int
    """Input rows that could not become an item (not a URL…): failed too."""
    bytes: int
    """Bytes of the files downloaded in this run."""
    received: int
    """Bytes received over the network in this run."""
    elapsed: float
    """Seconds."""
    interrupted: bool
    no_space: Optional[str]
    """Where the disk filled, if it did (the job stopped; run it again once
    there is room)."""
    failures: Dict[str, int]
    """Failed items by reason."""
    skips: Dict[str, int]
    """Skipped items by reason."""
    report: Path
    """The manifest (JSON Lines): the one asked for, or a temporary one that
    lives as long as this result."""

    def __init__(self, out: Union[Path, str], report: Path, raw: Dict[str, Any]) -> None:
        tally = raw["tally"]
        self.out = out
        self.report = report
        self.ok = tally["ok"]
        self.skipped = tally["skipped"]
        self.failed = tally["failed"]
        self.bad = tally["bad"]
        self.bytes = tally["bytes"]
        self.received = tally["received"]
        self.failures = dict(tally["failures"])
        self.skips = dict(tally["skips"])
        self.elapsed = raw["elapsed"]
        self.interrupted = raw["interrupted"]
        self.no_space = raw["no_space"]

    @property
    def all_ok(self) -> bool:
        """Every item done or skipped (the command's exit status 0)."""
        return self.failed + self.bad == 0 and self.no_space is None and not self.interrupted

    def outcomes(self) -> Iterator[Outcome]:
        """Every item's outcome, in the order they ended."""
        with open(self.report, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield Outcome._from_json(json.loads(line))

    def __iter__(self) -> Iterator[Outcome]:
        return self.outcomes()

    def to_arrow(self) -> "pyarrow.Table":
        """The manifest as an Arrow table (needs pyarrow)."""
        import pyarrow.json  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return pyarrow.json.read_json(str(self.report))

    def to_pandas(self) -> "pandas.DataFrame":
        """The manifest as a DataFrame (needs pandas)."""
        import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return pandas.read_json(self.report, lines=True, dtype=False)

    def __repr__(self) -> str:
        return (
            f"<haul.Result ok={self.ok} skipped={self.skipped} failed={self.failed} "
            f"bad={self.bad} bytes={self.bytes} elapsed={self.elapsed:.2f}s>"
        )


ProgressCallback = Callable[[Progress], None]


def _is_url(s: str) -> bool:
    return "://" in s and not os.path.exists(s)


def _spool_source(
    source: Source, spec: Dict[str, Any], scratch: Callable[[], Path]
) -> None:
    """Puts `source` into `spec` as URLs or input files, writing an iterable,
    a DataFrame or a table to a scratch file first (streamed: memory stays
    bounded however long the iterable is)."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(source, str) and _is_url(text):
            spec["urls"] = [text]
        else:
            spec["files"] = [text]
        return
    module = type(source).__module__.split(".")[0]
    if module == "pandas" and hasattr(source, "to_json"):
        path = scratch() / "rows.jsonl"
        source.to_json(path, orient="records", lines=True, date_format="iso")
        spec["files"] = [str(path)]
        spec.setdefault("format", "jsonl")
        return
    if module == "pyarrow" and hasattr(source, "schema"):
        import pyarrow.parquet  # type: ignore[import-untyped,import-not-found,unused-ignore]

        path = scratch() / "rows.parquet"
        pyarrow.parquet.write_table(source, path)
        spec["files"] = [str(path)]
        spec.setdefault("format", "parquet")
        return
    items = iter(source)
    try:
        first = next(items)
    except StopIteration:
        spec["urls"] = []
        return
    rest = itertools.chain([first], items)
    if isinstance(first, str):
        path = scratch() / "urls.txt"
        with open(path, "w", encoding="utf-8") as f:
            for u in rest:
                if not isinstance(u, str):
                    raise ConfigError(f"source: expected every item to be a URL string, got {u!r}")
                if "\n" in u or "\r" in u:
                    raise ConfigError(f"source: a URL cannot hold a line break: {u!r}")
                f.write(u + "\n")
        spec["files"] = [str(path)]
        spec.setdefault("format", "txt")
        return
    if isinstance(first, Mapping):
        path = scratch() / "rows.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for row in rest:
                if not isinstance(row, Mapping):
                    raise ConfigError(f"source: expected every row to be a dict, got {row!r}")
                f.write(json.dumps(dict(row), default=str, ensure_ascii=False) + "\n")
        spec["files"] = [str(path)]
        spec.setdefault("format", "jsonl")
        return
    raise ConfigError(
        "source: expected a URL, a path, an iterable of URLs or of dicts, a pandas "
        f"DataFrame or a pyarrow Table; got {type(first).__name__} items"
    )


def _options(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Turns the Python keyword arguments into the native job's spec."""
    spec: Dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in ("report", "failed", "state_dir") or key == "out":
            spec[key] = os.fspath(value)
        elif key == "store_options":
            spec[key] = {str(k): str(v) for k, v in value.items()}
        elif key == "rate":
            spec[key] = [value] if isinstance(value, str) else list(value)
        elif key == "headers":
            if isinstance(value, Mapping):
                spec[key] = [f"{k}: {v}" for k, v in value.items()]
            else:
                spec[key] = [str(h) for h in value]
        elif key in ("keep_columns", "hosts"):
            spec[key] = [value] if isinstance(value, str) else list(value)
        elif key in ("max_size", "min_size") and isinstance(value, str):
            spec[key] = _parse_size(key, value)
        else:
            spec[key] = value
    return spec


def _parse_size(key: str, text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    num, unit = t.rstrip("kmgt"), t[len(t.rstrip("kmgt")) :]
    try:
        return int(float(num) * units[unit])
    except (ValueError, KeyError):
        raise ConfigError(f"{key}: {text!r} is not a size such as 500k, 10M or 2G") from None


class _Run:
    """One job from start to result: the scratch space, the native job, the
    progress display."""

    def __init__(
        self,
        source: Optional[Source],
        out: StrPath,
        kwargs: Dict[str, Any],
        progress: Union[bool, ProgressCallback, None],
        start_urls: Optional[Sequence[str]] = None,
    ) -> None:
        self._scratch: Optional[Path] = None
        # A bucket URL stays a string: a Path would fold its "//".
        self.out: Union[Path, str] = out if isinstance(out, str) and "://" in out else Path(out)
        spec = _options(dict(kwargs, out=out))
        try:
            if start_urls is not None:
                spec["urls"] = list(start_urls)
            elif source is not None:
                _spool_source(source, spec, self.scratch)
            if "report" in spec:
                self.report = Path(spec["report"])
            else:
                self.report = self.scratch() / "manifest.jsonl"
                spec["report"] = str(self.report)
            self.job = _haul.Job(spec)
        except BaseException:
            self.cleanup()
            raise
        self.progress = _progress_display(progress)

    def scratch(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="haul-"))
        return self._scratch

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def tick(self) -> None:
        for level, text in self.job.messages():
            (log.warning if level == "warning" else log.info)("%s", text)
        if self.progress is not None:
            raw = self.job.progress()
            raw["hosts"] = tuple(tuple(h) for h in raw["hosts"])
            self.progress(Progress(**raw))

    def finish(self) -> Result:
        self.tick()
        if self.progress is not None:
            close = getattr(self.progress, "close", None)
            if close is not None:
                close()
        raw = self.job.result()
        result = Result(self.out, self.report, raw)
        if self._scratch is not None:
            if self.report.parent == self._scratch:
                # The manifest is read through the result: the scratch
                # space goes when the result does.
                weakref.finalize(result, shutil.rmtree, str(self._scratch), True)
                self._scratch = None
            else:
                self.cleanup()
        return result


class _TqdmProgress:
    """``progress=True``: a tqdm bar when tqdm is installed."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]

        self.bar = tqdm(unit="file", dynamic_ncols=True)

    def __call__(self, p: Progress) -> None:
        if p.input_done or p.seen > (self.bar.total or 0):
            self.bar.total = p.seen
        self.bar.n = p.done
        self.bar.set_postfix(failed=p.failed, MB=round(p.bytes / 1e6, 1), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class _LineProgress:
    """``progress=True`` without tqdm: a line on stderr every few seconds."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last >= 5:
            self.last = now
            total = str(p.seen) if p.input_done else f"{p.seen}+"
            print(
                f"haul: {p.done}/{total} files, {p.failed} failed, {p.bytes / 1e6:.1f} MB",
                file=sys.stderr,
            )


def _progress_display(
    progress: Union[bool, ProgressCallback, None],
) -> Optional[ProgressCallback]:
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            return _TqdmProgress()
        except ImportError:
            return _LineProgress()
    if callable(progress):
        return progress
    raise ConfigError(f"progress: expected a bool or a callable, got {progress!r}")


# Between two looks at the job: short enough for a lively progress display
# and a prompt Ctrl-C, long enough to cost nothing.
_TICK = 0.2


def _run_blocking(run: _Run) -> Result:
    run.job.start()
    try:
        while not run.job.wait(_TICK):
            run.tick()
    except KeyboardInterrupt:
        # As the command does: stop starting transfers, park the ones in
        # flight, write the reports; then let the interrupt through.
        run.job.cancel()
        while not run.job.wait(_TICK):
            pass
        try:
            run.finish()
        finally:
            run.cleanup()
        raise
    try:
        return run.finish()
    except BaseException:
        run.cleanup()
        raise


async def _run_async(run: _Run) -> Result:
    loop = asyncio.get_running_loop()
    run.job.start()
    try:
        while not await loop.run_in_executor(None, run.job.wait, _TICK):
            run.tick()
    except asyncio.CancelledError:
        run.job.cancel()
        await loop.run_in_executor(None, run.job.wait, None)
        try:
            run.finish()
        finally:
            run.cleanup()
        raise
    try:
        return run.finish()
    except BaseException:
        run.cleanup()
        raise


def download(
    source: Source,
    out: StrPath,
    *,
    jobs: int = 64,
    per_host: Optional[int] = None,
    fixed: bool = False,
    rate: Union[str, Sequence[str], None] = None,
    wait: Optional[float] = None,
    retries: int = 5,
    max_retry_wait: Optional[float] = None,
    timeout: Optional[float] = None,
    connect_timeout: Optional[float] = None,
    headers: Optional[Mapping[str, str]] = None,
    user_agent: Optional[str] = None,
    column: Optional[str] = None,
    format: Optional[str] = None,
    url: Optional[str] = None,
    name: Optional[str] = None,
    meta_url: Optional[str] = None,
    accept: Optional[str] = None,
    max_size: Union[int, str, None] = None,
    min_size: Union[int, str, None] = None,
    keep_columns: Optional[Sequence[str]] = None,
    checksum_column: Optional[str] = None,
    report: Optional[StrPath] = None,
    failed: Optional[StrPath] = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    hash: bool = False,
    sync: bool = True,
    store_options: Optional[Mapping[str, str]] = None,
    state_dir: Optional[StrPath] = None,
    progress: Union[bool, ProgressCallback, None] = None,
) -> Result:
    """Downloads every URL of `source` into the directory `out`.

    `source` is a URL, a path to a URL list or dataset (txt, CSV, TSV,
    JSONL, parquet; gzip/zstd too), an iterable of URLs or of dicts, a
    pandas DataFrame or a pyarrow Table. For tables, `column` names the URL
    column (found by itself when one holds URLs) and a cell may hold
    several URLs (a list literal); `url` builds URLs from a template of the
    row's fields (``"https://host/{col.id}.jpg"``), `name` names files by
    one (``"{col.label}/{stem}.{ext}"``), `meta_url` fetches a JSON document
    per item whose fields ``{meta.…}`` can name it.

    `jobs` transfers run at once; each host's window adapts to it up to
    `per_host` (a hard cap; `fixed` keeps it at `per_host`). `rate` limits
    requests: ``"10/s"`` for the job, ``"host=example.com:2/s"`` per host.
    Failed transfers are retried `retries` times, honouring Retry-After.
    `accept` (``"image/*"``), `max_size` and `min_size` check content.

    `out` may be a bucket, ``"s3://bucket/prefix/"`` (``gs://``, ``az://``):
    credentials come from the environment (``AWS_*``…), `store_options`
    sets the store's own keys (``{"aws_endpoint": "http://127.0.0.1:9000"}``),
    and the job state goes to `state_dir` (default ``.haul-jobs/…`` in the
    current directory).

    `report` writes the manifest (JSON Lines, or CSV when named ``*.csv``)
    and `failed` the list of failed URLs (the input's own rows for a table),
    to feed back. `progress` is ``True`` for a bar (tqdm when installed) or
    a callable that gets a :class:`Progress` a few times a second.

    Returns a :class:`Result`; failed items do not raise (look at
    ``result.failed`` and ``result.failures``). Raises :class:`ConfigError`
    for arguments that do not make a job, :class:`InputError` for an input
    that cannot be read, :class:`HaulError` when the job cannot run, and
    ``KeyboardInterrupt`` on Ctrl-C once the transfers are parked; run the
    same call again to carry on.
    """
    kwargs = dict(locals())
    for k in ("source", "out", "progress"):
        kwargs.pop(k)
    return _run_blocking(_Run(source, out, kwargs, progress))


async def download_async(
    source: Source, out: StrPath, **options: Any
) -> Result:
    """:func:`download` for asyncio: the job runs on its own threads while
    the event loop goes on; cancelling the task cancels the job (its
    transfers are parked) and raises ``CancelledError``."""
    progress = options.pop("progress", None)
    _check_options(download, options)
    return await _run_async(_Run(source, out, options, progress))


def _check_options(fn: Callable[..., Any], options: Dict[str, Any]) -> None:
    import inspect

    known = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{fn.__name__}() got unexpected keyword arguments: {', '.join(unknown)}")


def crawl(
    start_urls: Union[str, Sequence[str]],
    out: StrPath,
    *,
    select: str = "img",
    attr: str = "src",
    follow: Optional[str] = None,
    depth: Optional[int] = None,
    into: Optional[str] = None,
    hosts: Optional[Sequence[str]] = None,
    include: Optional[str] = None,
    exclude: Optional[str] = None,
    robots: bool = True,
    refresh: bool = False,
    **options: Any,
) -> Result:
    """Crawls pages for files: from each start page, the elements `select`
    matches give file URLs in their `attr` (``"data-src,src"`` takes the
    first present), links `follow` matches are crawled too (5 deep unless
    `depth` says otherwise), and each page's files go in a folder named by
    `into` (``"{page.title}"`` by default). The crawl stays on the start
    pages' hosts (and `hosts`), honours robots.txt unless `robots` is
    false, and with `refresh` re-reads the pages of an earlier run, asking
    whether they changed, to find new files. Every other option is
    :func:`download`'s."""
    _check_options(download, options)
    progress = options.pop("progress", None)
    starts = [start_urls] if isinstance(start_urls, str) else list(start_urls)
    kwargs = dict(
        options,
        select=select,
        attr=attr,
        follow=follow,
        depth=depth,
        into=into,
        hosts=hosts,
        include=include,
        exclude=exclude,
        robots=robots,
        refresh=refresh,
    )
    return _run_blocking(_Run(None, out, kwargs, progress, start_urls=starts))


async def crawl_async(
    start_urls: Union[str, Sequence[str]], out: StrPath, **options: Any
) -> Result:
    """:func:`crawl` for asyncio, as :func:`download_async` is to
    :func:`download`."""
    progress = options.pop("progress", None)
    crawl_only = {
        "select",
        "attr",
        "follow",
        "depth",
        "into",
        "hosts",
        "include",
        "exclude",
        "robots",
        "refresh",
    }
    _check_options(download, {k: v for k, v in options.items() if k not in crawl_only})
    options.setdefault("select", "img")
    starts = [start_urls] if isinstance(start_urls, str) else list(start_urls)
    return await _run_async(_Run(None, out, options, progress, start_urls=starts))

