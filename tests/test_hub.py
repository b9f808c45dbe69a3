"""Hub model names (hf:ORG/NAME[@REVISION][/FILE]) read from a hub cache built here, and the
Hub folder export. Nothing here reaches the network: huggingface_hub's own offline switch
is forced on for every test, so any request it tried would fail."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import echofm
from echofm.cli import main
from echofm.errors import EchoFMError
from echofm.model import hub

pytest.importorskip("huggingface_hub")

REPO = "sekeun/EchoFM"
MAIN = "a" * 40  # refs/main
V2 = "b" * 40  # refs/v2: two weight files


def _perturbed_release(src: Path, dst: Path) -> None:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["model"] = {k: v + 0.5 if k == "norm.weight" else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, dst)


@pytest.fixture
def release(official_dir) -> Path:
    return official_dir / "tiny_official_release_ckpt.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """huggingface_hub refuses every HTTP request while its offline constant is set."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub_cache(tmp_path, release, monkeypatch) -> Path:
    """A cache as huggingface_hub lays it out: refs/REV holds a commit, snapshots/COMMIT/FILE
    links into blobs/."""
    cache = tmp_path / "hub"
    repo = cache / ("models--" + REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)  # huggingface_hub writes no newline
    (repo / "refs" / "v2").write_text(V2)

    def put(commit: str, name: str, make) -> None:
        blob = repo / "blobs" / f"{commit[:8]}-{name.replace('/', '-')}"
        make(blob)
        entry = repo / "snapshots" / commit / name
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(Path("../" * (len(Path(name).parts) + 1)) / "blobs" / blob.name)

    put(MAIN, "echofm_vitl.pth", lambda p: shutil.copy(release, p))
    put(MAIN, "README.md", lambda p: p.write_text("model card"))
    put(V2, "echofm_vitl.pth", lambda p: _perturbed_release(release, p))
    put(V2, "own/model.safetensors",
        lambda p: echofm.save_model(echofm.load_model(release), p))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _same_function(a, b) -> bool:
    clip = torch.rand(1, 3, a.cfg.num_frames, a.cfg.img_size, a.cfg.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval().embed(clip).video, b.eval().embed(clip).video)


def test_hub_name_loads_the_same_model_as_the_local_file(hub_cache, release):
    local = echofm.load_model(release)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # offline: the Hub is never asked, so never "unreachable"
        remote = echofm.load_model("hf:sekeun/EchoFM")
    assert remote.load_report.hub["online"] is False
    assert remote.cfg == local.cfg
    assert remote.load_report.layout == local.load_report.layout == "public-release"
    assert remote.load_report.missing == [] and remote.load_report.unexpected == []
    for k, v in local.state_dict().items():
        assert torch.equal(remote.state_dict()[k], v), k
    assert _same_function(remote, local)
    origin = remote.load_report.hub
    assert origin["repo_id"] == REPO and origin["revision"] == "main" and origin["commit"] == MAIN
    assert origin["filename"] == "echofm_vitl.pth"
    assert Path(origin["path"]) == hub_cache.resolve() / f"models--sekeun--EchoFM/snapshots/{MAIN}/echofm_vitl.pth"
    assert local.load_report.hub is None
    encoder = echofm.load_encoder("hf:sekeun/EchoFM")
    for k, v in local.encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[k], v), k


def test_revision_and_file_choose_what_is_loaded(hub_cache, release):
    local = echofm.load_model(release)
    with pytest.raises(EchoFMError, match="several weight files.*echofm_vitl.pth.*own/model.safetensors"):
        echofm.load_model("hf:sekeun/EchoFM@v2")
    perturbed = echofm.load_model("hf:sekeun/EchoFM@v2/echofm_vitl.pth")
    assert perturbed.load_report.hub["commit"] == V2 and perturbed.load_report.hub["revision"] == "v2"
    assert torch.allclose(perturbed.encoder.norm.weight, local.encoder.norm.weight + 0.5)
    own = echofm.load_model("hf:sekeun/EchoFM@v2/own/model.safetensors")
    assert own.load_report.layout == "echofm" and _same_function(own, local)
    by_commit = echofm.load_model(f"hf:sekeun/EchoFM@{MAIN}/echofm_vitl.pth")
    assert by_commit.load_report.hub["commit"] == MAIN and _same_function(by_commit, local)


def test_info_says_where_the_file_came_from(hub_cache, capsys):
    assert main(["info", "hf:sekeun/EchoFM@v2/echofm_vitl.pth"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "hf:sekeun/EchoFM@v2/echofm_vitl.pth"
    assert out["hub"]["repo_id"] == REPO and out["hub"]["commit"] == V2 and out["hub"]["online"] is False
    assert Path(out["hub"]["path"]).is_file() and str(hub_cache.resolve()) in out["hub"]["path"]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_offline_with_an_empty_cache_is_one_line_with_the_way_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _one_line_error(capsys, ["info", "hf:sekeun/EchoFM"])
    assert "hf:sekeun/EchoFM" in line and "HF_HUB_OFFLINE is set" in line and "local file path" in line
    assert str(tmp_path / "empty") in line


def test_offline_cache_lacking_the_file_is_one_line(hub_cache, capsys):
    line = _one_line_error(capsys, ["info", "hf:sekeun/EchoFM/missing.pth"])
    assert "holds no missing.pth" in line and "local file path" in line


def test_unreachable_hub_says_so_and_falls_back_to_the_cache(hub_cache, tmp_path, monkeypatch, capsys, release):
    # Not offline by our variable, but every request fails (huggingface_hub's switch is on).
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.warns(UserWarning, match="cannot be reached.*using the cached copy"):
        model = echofm.load_model("hf:sekeun/EchoFM")
    assert model.load_report.hub["online"] is False and model.load_report.hub["commit"] == MAIN
    assert _same_function(model, echofm.load_model(release))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    line = _one_line_error(capsys, ["info", "hf:sekeun/EchoFM"])
    assert "cannot reach the Hugging Face Hub" in line and "HF_HUB_OFFLINE=1" in line and "local file path" in line


class _FakeHub:
    """Stands in for the Hub's answer to model_info: the commit and file list of a revision."""

    def __init__(self, answers):
        self.answers = answers

    def __call__(self):
        return self

    def model_info(self, repo_id, revision=None, timeout=None):
        answer = self.answers[(repo_id, revision)]
        if isinstance(answer, Exception):
            raise answer
        sha, files = answer
        return SimpleNamespace(sha=sha, siblings=[SimpleNamespace(rfilename=f) for f in files])


def test_online_the_hub_pins_the_commit_and_the_cache_serves_it(hub_cache, monkeypatch, release, capsys):
    import huggingface_hub
    from huggingface_hub import errors

    monkeypatch.delenv("HF_HUB_OFFLINE")
    # huggingface_hub 2.x builds its errors on httpx2, 1.x on httpx: take the one it uses.
    try:
        import httpx2 as httpx
    except ImportError:
        httpx = pytest.importorskip("httpx")
    url = "https://huggingface.co/api/models/sekeun/Nope"
    missing = errors.RepositoryNotFoundError("404 Client Error: Repository Not Found",
                                             response=httpx.Response(404, request=httpx.Request("GET", url)))
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHub({
        (REPO, "main"): (MAIN, ["README.md", "echofm_vitl.pth"]),
        (REPO, "v2"): (V2, ["echofm_vitl.pth", "own/model.safetensors"]),
        ("sekeun/Nope", "main"): missing}))
    model = echofm.load_model("hf:sekeun/EchoFM")  # the commit is cached: no download is tried
    assert model.load_report.hub["online"] is True and model.load_report.hub["commit"] == MAIN
    assert _same_function(model, echofm.load_model(release))
    with pytest.raises(EchoFMError, match="several weight files on the Hub"):
        echofm.load_model("hf:sekeun/EchoFM@v2")
    line = _one_line_error(capsys, ["info", "hf:sekeun/EchoFM/other.pth"])
    assert "no file 'other.pth' in sekeun/EchoFM at revision 'main'" in line
    line = _one_line_error(capsys, ["info", "hf:sekeun/Nope"])
    assert "no repository sekeun/Nope on the Hub" in line


def test_missing_huggingface_hub_names_the_extra(hub_cache, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    line = _one_line_error(capsys, ["info", "hf:sekeun/EchoFM"])
    assert "pip install 'echofm[hub]'" in line


def test_cache_folder_and_offline_switch_are_read_at_each_call(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hub_cache_dir() == tmp_path / "cache"
    assert not hub.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert hub.hub_offline()


@pytest.mark.parametrize("bad", ["hf:EchoFM", "hf:", "hf:a/../b", "hf:a/b@", "hf:a/b/../x.pth"])
def test_malformed_names_are_refused(bad):
    with pytest.raises(EchoFMError, match="not a hub model name"):
        hub.parse_hub_name(bad)


def test_parse_hub_name():
    assert hub.parse_hub_name("hf:sekeun/EchoFM") == hub.HubName("sekeun/EchoFM")
    assert hub.parse_hub_name("hf:o/n@v1.0/sub/w.safetensors") == hub.HubName("o/n", "v1.0", "sub/w.safetensors")
    assert str(hub.parse_hub_name("hf:o/n@v1/w.pth")) == "hf:o/n@v1/w.pth"


def test_no_other_module_talks_to_the_hub():
    src = Path(echofm.__file__).parent
    allowed = src / "model" / "hub.py"
    words = ("huggingface_hub", "hf_hub_download", "snapshot_download", "HfApi", "list_repo_files", "model_info(")
    offenders = [f"{path.relative_to(src)}: {word}" for path in src.rglob("*.py") if path != allowed
                 for word in words if word in path.read_text()]
    assert offenders == []
    assert "hf_hub_download" in allowed.read_text()


# --- the Hub folder --------------------------------------------------------------------

def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_convert_to_hub_folder_from_a_hub_name(hub_cache, tmp_path, release, capsys):
    out = tmp_path / "upload"
    assert main(["convert", "hf:sekeun/EchoFM", "--to", "hub", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["source_layout"] == "public-release"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == echofm.load_model(release).cfg.to_dict()
    assert config["metadata"]["hub_origin"]["commit"] == MAIN
    front, body = _card(out)
    assert front["library_name"] == "echofm" and "echocardiography" in front["tags"]
    assert "see the source" in body
    assert "## Training data\n\nNone recorded" in body and "## Metrics\n\nNone recorded." in body
    assert f"commit {MAIN}" in body
    assert _same_function(echofm.load_model(out), echofm.load_model(release))


def test_hub_folder_from_a_run_carries_its_data_and_metrics(tmp_path):
    from echofm.publish import export_hub_folder
    from echofm.train.config import PretrainConfig
    from echofm.train.pretrain import pretrain

    cfg = echofm.ModelConfig(img_size=32, patch_size=8, num_frames=16, t_patch_size=2, embed_dim=32, depth=2,
                             num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, pred_t_dim=8)
    run = tmp_path / "run"
    pretrain(PretrainConfig(model=cfg, model_name="micro", out=str(run), data=["synth:4"], batch_size=2, steps=2,
                            warmup_steps=1, workers=0, checkpoint_every=0, progress=False, device="cpu"))
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for source in (run, run / "model"):
        folder = export_hub_folder(source, tmp_path / f"up_{source.name}")
        assert folder.run_dir == run
        assert folder.training_data["data"] == ["synth:4"] and folder.training_data["steps"] == 2
        assert folder.metrics["step"] == 2 and folder.metrics["values"]["loss"] == last["loss"]
        _, body = _card(folder.out)
        assert "- data: synth:4" in body and "- steps: 2" in body
        assert f"| loss | {last['loss']:.6g} |" in body and "clips_per_s" not in body
    saved = echofm.load_model(run / "model")
    assert _same_function(echofm.load_model(tmp_path / "up_run"), saved)
