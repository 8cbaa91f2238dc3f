"""haul.download against the Rust test origin."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import haul
from conftest import FLAGS, S3, Origin, verify


def files(out: Path) -> List[str]:
    return sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".haul" not in p.parts
    )


def test_a_list_file_every_outcome_and_the_failed_list(origin: Origin, tmp_path: Path) -> None:
    paths = [f"/file/f{i:03}.bin?size={1000 + i}" for i in range(120)]
    urls = [origin.url(p) for p in paths] + [origin.url("/status/404/gone.bin"), "not a url"]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    seen: List[haul.Progress] = []
    r = haul.download(listing, out, jobs=16, failed=tmp_path / "failed.txt", progress=seen.append)
    assert (r.ok, r.failed, r.bad) == (120, 1, 1)
    assert r.failures == {"HTTP 404 Not Found": 1, "bad url": 1}
    assert not r.all_ok
    verify(out, [(p, p.split("/")[2].split("?")[0]) for p in paths])
    outcomes = list(r.outcomes())
    assert len(outcomes) == 122
    gone = next(o for o in outcomes if o.url.endswith("gone.bin"))
    assert (gone.status, gone.http_status, gone.reason) == ("failed", 404, "HTTP 404 Not Found")
    bad = next(o for o in outcomes if o.url == "not a url")
    assert (bad.status, bad.line, bad.input) == ("failed", 122, str(listing))
    ok = next(o for o in outcomes if o.path == "f007.bin")
    assert (ok.bytes, ok.http_status, len(ok.sha256 or "")) == (1007, 200, 64)
    assert sorted((tmp_path / "failed.txt").read_text().splitlines()) == [
        origin.url("/status/404/gone.bin"),
        "not a url",
    ]
    assert seen and seen[-1].done == 122 and seen[-1].input_done

    # The same call again: the job is done, nothing is fetched.
    again = haul.download(listing, out)
    assert (again.ok, again.skipped) == (0, 120)
    assert origin.requests() == 121


def test_iterables_of_urls_and_of_rows(origin: Origin, tmp_path: Path) -> None:
    def gen() -> Iterator[str]:
        for i in range(30):
            yield origin.url(f"/file/g{i}.bin?size=300")

    r = haul.download(gen(), tmp_path / "gen")
    assert r.ok == 30
    rows = [{"id": i, "label": f"L{i % 3}", "link": origin.url(f"/file/r{i}.bin?size=50")} for i in range(12)]
    r = haul.download(rows, tmp_path / "rows", name="{col.label}/{col.id}.bin", keep_columns=["id"])
    assert r.ok == 12
    assert "L1/4.bin" in files(tmp_path / "rows")
    first = next(o for o in r.outcomes() if o.path == "L0/0.bin")
    assert first.extra["columns"] == {"id": "0"}
    # A list of URLs is passed as it is.
    r = haul.download([origin.url("/file/one.bin")], tmp_path / "one")
    assert files(tmp_path / "one") == ["one.bin"]


def test_a_csv_with_list_literal_cells(origin: Origin, tmp_path: Path) -> None:
    table = tmp_path / "posts.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pics"])
        for i in range(5):
            pics = [origin.url(f"/file/p{i}-{k}.jpg?size=100") for k in range(3)]
            w.writerow([i, str(pics)])
        w.writerow([5, "[]"])
    r = haul.download(table, tmp_path / "out", column="pics")
    assert r.ok == 15
    assert len(files(tmp_path / "out")) == 15


def test_the_flags_named_from_their_metadata(start_origin: Callable[..., Origin], tmp_path: Path) -> None:
    origin = start_origin("--static", str(FLAGS))
    codes = sorted(p.name for p in FLAGS.iterdir() if p.is_dir())
    assert len(codes) == 194
    r = haul.download(
        [{"cc": c} for c in codes],
        tmp_path / "flags",
        url=origin.url("/static/{col.cc}/{col.cc}.gif"),
        meta_url=origin.url("/static/{col.cc}/metadata.json"),
        name='{col.cc|upper}-{meta.country|replace(" ","_")}.gif',
    )
    assert (r.ok, r.failed) == (194, 0), r.failures
    got = files(tmp_path / "flags")
    assert "CN-China.gif" in got and "BR-Brazil.gif" in got
    assert (tmp_path / "flags" / "CN-China.gif").read_bytes() == (FLAGS / "cn" / "cn.gif").read_bytes()


def test_ctrl_c_parks_the_transfers_and_the_same_call_resumes(origin: Origin, tmp_path: Path) -> None:
    size = 1 << 20
    path = f"/drip/big.bin?size={size}&chunk=16384&delay_ms=20"
    out = tmp_path / "out"
    report = tmp_path / "r.jsonl"

    def interrupt(p: haul.Progress) -> None:
        if p.bytes > 100_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        haul.download([origin.url(path)], out, progress=interrupt, report=report)
    assert not (out / "big.bin").exists(), "no partial file under the final name"
    r = haul.download([origin.url(path)], out, report=report)
    assert r.ok == 1
    verify(out, [(path, "big.bin")])
    note = next(iter(r.outcomes())).note
    assert note is not None and note.startswith("resumed at byte"), note


def test_the_gil_is_released_while_the_job_runs(origin: Origin, tmp_path: Path) -> None:
    # One wait() for the whole job, on another thread: if it held the GIL,
    # this thread could not run until the job had ended.
    url = origin.url("/drip/slow.bin?size=40000&chunk=1000&delay_ms=25")
    run = haul._Run([url], tmp_path / "out", {}, None)
    run.job.start()
    waiter = threading.Thread(target=run.job.wait)
    waiter.start()
    # Lets the waiter into wait(); with the GIL held there, this thread
    # would wake only once the job had ended.
    time.sleep(0.2)
    assert not run.job.wait(0), "this thread ran only once the job had ended"
    waiter.join()
    assert run.finish().ok == 1


def test_download_async_keeps_the_loop_running(origin: Origin, tmp_path: Path) -> None:
    urls = [origin.url(f"/drip/a{i}.bin?size=8000&chunk=1000&delay_ms=20") for i in range(4)]

    async def main() -> "tuple[haul.Result, int]":
        ticks = 0
        task = asyncio.ensure_future(haul.download_async(urls, tmp_path / "out"))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        return await task, ticks

    r, ticks = asyncio.run(main())
    assert r.ok == 4
    assert ticks > 1, "the loop went on while the job ran"

    async def cancelled() -> None:
        task = asyncio.ensure_future(
            haul.download_async([origin.url("/drip/c.bin?size=400000&chunk=4000&delay_ms=20")], tmp_path / "c")
        )
        await asyncio.sleep(0.3)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    r = haul.download([origin.url("/drip/c.bin?size=400000&chunk=4000&delay_ms=20")], tmp_path / "c")
    assert r.ok == 1


def test_bad_input_raises_clear_exceptions(tmp_path: Path) -> None:
    with pytest.raises(haul.InputError, match="cannot read input .*missing.txt"):
        haul.download(tmp_path / "missing.txt", tmp_path / "out")
    with pytest.raises(haul.ConfigError, match="--name"):
        haul.download(["http://127.0.0.1:9/x"], tmp_path / "out", name="{nope")
    with pytest.raises(haul.ConfigError, match="rate"):
        haul.download(["http://127.0.0.1:9/x"], tmp_path / "out", rate="fast")
    with pytest.raises(haul.ConfigError, match="expected a URL"):
        haul.download([1, 2], tmp_path / "out")  # type: ignore[list-item]
    with pytest.raises(haul.ConfigError, match="jobs"):
        haul.download(["http://127.0.0.1:9/x"], tmp_path / "out", jobs="many")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="jbos"):
        asyncio.run(haul.download_async(["http://127.0.0.1:9/x"], tmp_path / "out", jbos=3))
    table = tmp_path / "t.csv"
    table.write_text("id,name\n1,a\n")
    with pytest.raises(haul.InputError, match="no column holds an http"):
        haul.download(table, tmp_path / "out")
    assert issubclass(haul.ConfigError, ValueError)


def test_a_crawl_into_titled_folders(start_origin: Callable[..., Origin], tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<html><head><title>Cats &amp; Dogs</title></head><body>'
        '<img src="a.jpg"><img data-src="b.jpg" src="blank.gif"><a href="two.html">next</a></body></html>'
    )
    (site / "two.html").write_text('<html><head><title>Two</title></head><body><img src="c.jpg"></body></html>')
    for n in ["a.jpg", "b.jpg", "c.jpg", "blank.gif"]:
        (site / n).write_bytes(n.encode())
    origin = start_origin("--static", str(site))
    r = haul.crawl(origin.url("/static/index.html"), tmp_path / "out", attr="data-src,src", follow="a")
    assert r.failed == 0
    assert files(tmp_path / "out") == ["Cats & Dogs/a.jpg", "Cats & Dogs/b.jpg", "Two/c.jpg"]


def test_tables_from_pandas_and_arrow(origin: Origin, tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    pyarrow = pytest.importorskip("pyarrow")
    df = pandas.DataFrame({"u": [origin.url(f"/file/d{i}.bin?size=10") for i in range(5)], "k": range(5)})
    r = haul.download(df, tmp_path / "df", name="{col.k}.bin")
    assert files(tmp_path / "df") == [f"{i}.bin" for i in range(5)]
    table = pyarrow.table({"u": [origin.url(f"/file/t{i}.bin?size=10") for i in range(5)]})
    r = haul.download(table, tmp_path / "arrow")
    assert r.ok == 5
    frame = r.to_pandas()
    assert sorted(frame["path"]) == [f"t{i}.bin" for i in range(5)]
    assert r.to_arrow().num_rows == 5


def test_the_haul_command_from_the_environment() -> None:
    exe = shutil.which("haul", path=str(Path(sys.executable).parent))
    assert exe, "pip install puts the haul command beside python"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "resumable" in done.stdout
    done = subprocess.run([sys.executable, "-m", "haul", "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"haul {haul.__version__}"


def test_a_bucket_as_out(origin: Origin, s3: S3, tmp_path: Path) -> None:
    assert s3.request("PUT", "/bkt")[0] == 200
    paths = [f"/file/o{i:02}.bin?size={2000 + i}" for i in range(30)]
    urls = [origin.url(p) for p in paths]
    options = {
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
        "aws_region": "us-east-1",
        "aws_endpoint": s3.endpoint,
        "aws_allow_http": "true",
    }
    r = haul.download(
        urls, "s3://bkt/py/", store_options=options, state_dir=tmp_path / "state", jobs=8
    )
    assert (r.ok, r.failed) == (30, 0)
    assert r.out == "s3://bkt/py/"
    assert (tmp_path / "state" / ".haul" / "state.db").exists()
    # The same files to disk, checked against the origin, then compared.
    local = tmp_path / "local"
    haul.download(urls, local)
    verify(local, [(p, p.split("/")[2].split("?")[0]) for p in paths])
    for p in paths:
        name = p.split("/")[2].split("?")[0]
        status, body = s3.request("GET", f"/bkt/py/{name}")
        assert status == 200 and body == (local / name).read_bytes(), name
    again = haul.download(urls, "s3://bkt/py/", store_options=options, state_dir=tmp_path / "state")
    assert (again.ok, again.skipped) == (0, 30)

    with pytest.raises(haul.HaulError, match="the bucket does not exist"):
        haul.download(
            urls, "s3://missing/x/", store_options=options, state_dir=tmp_path / "state2"
        )
