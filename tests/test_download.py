"""The download stage against file:// sources built in tmp_path: checksums, reuse, derivations, the rule.

Offline: urllib reads file:// URLs as it reads https:// ones, so the registry's logic runs unchanged."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from snakemake_plan import plan

from bioprune.cli import main
from bioprune.config import expand_data_dir
from bioprune.download import check_present, download, fetch, load_registry

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
FASTA = b">a x\nACGU\n>b y\nGGCC\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(tmp_path: Path, files: dict, parts: str | None = None) -> Path:
    if parts is not None:
        (tmp_path / "parts.sha256").write_text(parts)
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"toy": {"files": files}}}))
    return path


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "upstream" / "toy.fasta"
    path.parent.mkdir()
    path.write_bytes(FASTA)
    return path


def test_good_checksum_is_downloaded_and_logged(tmp_path, source, caplog):
    caplog.set_level("INFO")
    out = fetch(source.as_uri(), tmp_path / "data" / "toy.fasta", sha(FASTA))
    assert out.read_bytes() == FASTA
    assert "sha256 verified" in caplog.text
    assert [p.name for p in out.parent.iterdir()] == ["toy.fasta"]  # no temporary left beside it


def test_bad_checksum_fails_clearly_and_leaves_no_file(tmp_path, source, capsys):
    wrong = "0" * 64
    registry = write_registry(tmp_path, {"toy.fasta": {"url": source.as_uri(), "sha256": wrong}})
    data = tmp_path / "data"
    rc = main(["download", "--registry", str(registry), "--data-dir", str(data), "toy/toy.fasta"])
    err = capsys.readouterr().err
    assert rc != 0
    assert source.as_uri() in err and wrong in err and sha(FASTA) in err, err
    assert not any(p.is_file() for p in data.rglob("*")), list(data.rglob("*"))


def test_unreachable_url_names_it(tmp_path, capsys):
    missing = (tmp_path / "nowhere.fasta").as_uri()
    registry = write_registry(tmp_path, {"toy.fasta": {"url": missing, "sha256": sha(FASTA)}})
    rc = main(["download", "--registry", str(registry), "--data-dir", str(tmp_path / "data"), "toy"])
    assert rc != 0 and f"{missing}: download failed" in capsys.readouterr().err
    assert not (tmp_path / "data" / "toy" / "toy.fasta").exists()


def test_an_existing_verified_copy_is_not_downloaded_again(tmp_path, write_fasta):
    # The URL does not exist: any attempt to download would fail.
    url = (tmp_path / "gone.fasta.gz").as_uri()
    registry = write_registry(tmp_path, {"toy.fasta.gz": {"url": url, "sha256": sha(FASTA), "gzip": True}})
    copy = write_fasta("copy/toy/toy.fasta.gz", FASTA)  # gzipped by another tool: the content is what counts
    before = copy.stat().st_mtime_ns
    rc = main(["download", "--registry", str(registry), "--data-dir", str(tmp_path / "copy"), "toy"])
    assert rc == 0 and copy.stat().st_mtime_ns == before
    assert check_present(list(load_registry(registry).values()), tmp_path / "copy") == []


def test_a_copy_that_does_not_verify_is_named(tmp_path, write_fasta):
    registry = write_registry(tmp_path, {"toy.fasta": {"url": "file:///x", "sha256": sha(FASTA)}})
    bad = write_fasta("copy/toy/toy.fasta", ">a\nAAAA\n")
    (problem,) = check_present(list(load_registry(registry).values()), tmp_path / "copy")
    assert str(bad) in problem and sha(FASTA) in problem and sha(bad.read_bytes()) in problem


def test_gzip_derivation_is_byte_reproducible(tmp_path, source):
    spec = {"url": source.as_uri(), "sha256": sha(FASTA), "gzip": True}
    item = load_registry(write_registry(tmp_path, {"toy.fasta.gz": spec}))["toy/toy.fasta.gz"]
    first = download(item, tmp_path / "a").read_bytes()
    assert gzip.decompress(first) == FASTA and download(item, tmp_path / "b").read_bytes() == first
    assert (tmp_path / "a" / ".sources" / "toy" / "toy.fasta").read_bytes() == FASTA  # kept for reuse


def test_zip_member_gzipped(tmp_path):
    archive = tmp_path / "splits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("splits/other.csv", "x\n")
        zf.writestr("splits/two_vs_rest.csv", "sequence,target\nMKV,1.0\n")
    spec = {
        "url": archive.as_uri(),
        "sha256": sha(archive.read_bytes()),
        "derive": "zip_member",
        "member": "splits/two_vs_rest.csv",
        "gzip": True,
        "content_sha256": sha(b"sequence,target\nMKV,1.0\n"),
    }
    item = load_registry(write_registry(tmp_path, {"two_vs_rest.csv.gz": spec}))["toy/two_vs_rest.csv.gz"]
    assert gzip.decompress(download(item, tmp_path / "data").read_bytes()) == b"sequence,target\nMKV,1.0\n"


def _deb(path: Path, member: str, data: bytes) -> Path:
    """A minimal Debian package: an ar archive whose data.tar.xz holds ``member``."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:xz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    out = b"!<arch>\n"
    for name, body in (
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", b"x"),
        ("data.tar.xz", tar_buf.getvalue()),
    ):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body
        out += b"\n" if len(body) % 2 else b""
    path.write_bytes(out)
    return path


def test_deb_member(tmp_path):
    db = gzip.compress(FASTA)
    deb = _deb(tmp_path / "ex.deb", "./usr/share/doc/ex/DB.fasta.gz", db)
    spec = {
        "url": deb.as_uri(),
        "sha256": sha(deb.read_bytes()),
        "derive": "deb_member",
        "member": "./usr/share/doc/ex/DB.fasta.gz",
        "content_sha256": sha(FASTA),
    }
    item = load_registry(write_registry(tmp_path, {"DB.fasta.gz": spec}))["toy/DB.fasta.gz"]
    assert download(item, tmp_path / "data").read_bytes() == db  # copied out byte for byte


STO = {
    "RF00001": "# STOCKHOLM 1.0\n#=GF AC   RF00001\n#=GF ID   5S_rRNA\n\nX1/1-8  AC-GT..A\nX2/2-9  ac~gtTA_\n"
    "#=GC SS_cons  <<..>>..\n//\n",
    "RF00002": "# STOCKHOLM 1.0\n#=GF AC   RF00002\n#=GF ID   5_8S\n\nY1/1-4  GG--\n\nY1/1-4  CC\n//\n",
}


def test_stockholm_parts_make_the_seed_fasta(tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    for part, text in STO.items():
        (upstream / f"{part}.txt").write_text(text)
    expected = (
        b">X1/1-8 RF00001 5S_rRNA\nACGUA\n>X2/2-9 RF00001 5S_rRNA\nACGUUA\n>Y1/1-4 RF00002 5_8S\nGGCC\n"
    )
    parts = "".join(f"{sha(t.encode())}  {p}\n" for p, t in STO.items())
    spec = {
        "url": f"{upstream.as_uri()}/{{part}}.txt",
        "parts": "parts.sha256",
        "derive": "stockholm_fasta",
        "gzip": True,
        "content_sha256": sha(expected),
    }
    item = load_registry(write_registry(tmp_path, {"seed.fasta.gz": spec}, parts))["toy/seed.fasta.gz"]
    assert gzip.decompress(download(item, tmp_path / "data").read_bytes()) == expected
    # a part that changed upstream is named with its URL and both checksums, and nothing is derived
    (upstream / "RF00002.txt").write_text(STO["RF00002"].replace("GG", "GA"))
    with pytest.raises(Exception, match=r"RF00002\.txt: checksum mismatch"):
        download(item, tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "toy" / "seed.fasta.gz").exists()


def test_registry_rejects_a_malformed_pin(tmp_path):
    with pytest.raises(Exception, match="64 lower-case hex"):
        load_registry(write_registry(tmp_path, {"x.fasta": {"url": "file:///x", "sha256": "abc"}}))


def test_expand_data_dir_lists_the_files_a_config_reads():
    cfg = {
        "data_dir": "data/",
        "inputs": ["{data_dir}/set/a.fasta", "example/b.fasta"],
        "evaluate": {"tasks": {"t": {"train": "{data_dir}/set/t.dbn.gz", "label_regex": r"^(\S+)"}}},
    }
    assert expand_data_dir(cfg) == ["set/a.fasta", "set/t.dbn.gz"]
    assert cfg["inputs"] == ["data/set/a.fasta", "example/b.fasta"]
    assert cfg["evaluate"]["tasks"]["t"] == {"train": "data/set/t.dbn.gz", "label_regex": r"^(\S+)"}


def test_every_real_data_config_file_is_in_the_registry():
    """Each '{data_dir}/...' path of the real-data configs has a registry entry, so the rule can fetch it."""
    registry = load_registry()
    for name in ("rfam_full.yaml", "rfam_study.yaml", "uniprot_full.yaml"):
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        used = expand_data_dir({**cfg, "data_dir": "data"})
        assert used and set(used) <= set(registry), (name, sorted(set(used) - set(registry)))


@pytest.mark.realdata
def test_the_shared_copy_verifies_against_the_registry(shared_data):
    assert check_present(list(load_registry().values()), shared_data) == []
    assert all((shared_data / path).is_file() for path in load_registry())


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(cwd), "-s", str(ROOT / "Snakefile")]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True)


def test_dry_run_plans_the_downloads_of_a_real_data_config(tmp_path):
    data = tmp_path / "empty"
    planned = plan(
        ROOT, "--configfile", "config/rfam_full.yaml", "--config", f"data_dir={data}", snakefile=SNAKEFILE
    )
    outputs = set(planned.outputs("download"))
    for path in ("rfam14.2_seed/rfam14.2_seed.fasta.gz", "bprna_ss/TR0.dbn.gz", "bprna_ss/VL0.dbn.gz"):
        assert f"{data}/{path}" in outputs, path
    assert f"{data}/nrc_ncrna_classes/dataset_nRC_test.fasta" in outputs
    assert not data.exists()  # a dry run fetches nothing


@pytest.mark.workflow
def test_the_rule_downloads_then_reuses_then_refuses_a_bad_copy(tmp_path, source):
    """Run the rule for real on a file:// registry (config data_registry), then plan again."""
    registry = write_registry(tmp_path, {"toy.fasta": {"url": source.as_uri(), "sha256": sha(FASTA)}})
    work = tmp_path / "work"
    work.mkdir()
    config = ["--config", f"data_registry={registry}", "data_dir=data", "inputs=['{data_dir}/toy/toy.fasta']"]
    proc = _snakemake(*config, "--", "data/toy/toy.fasta", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "data" / "toy" / "toy.fasta").read_bytes() == FASTA
    assert "sha256 verified" in (work / "logs" / "download" / "toy" / "toy.fasta.log").read_text()
    assert plan(work, *config, "--", "data/toy/toy.fasta", snakefile=SNAKEFILE).jobs == []
    (work / "data" / "toy" / "toy.fasta").write_bytes(b">a\nAAAA\n")
    proc = _snakemake("-n", *config, "--", "data/toy/toy.fasta", cwd=work)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "data/toy/toy.fasta: content sha256" in out and sha(FASTA) in out, out[
        -3000:
    ]
