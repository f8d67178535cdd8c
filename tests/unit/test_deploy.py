# Copyright (C) 2026 anomalib-kd-ext contributors
# SPDX-License-Identifier: Apache-2.0

"""Folder scoring with an OpenVINO model (`python -m anomalib_kd_ext.deploy`), on a small hand-built OpenVINO graph.

The graph has anomalib's interface (input ``[N, 3, H, W]`` of any size; outputs ``pred_score``, ``pred_label``,
``anomaly_map`` at a fixed size) and a known answer: the map is the channel mean resized to 32x32 and the score is
its maximum. The end-to-end test of real exported models is in ``tests/integration/test_cli_end_to_end.py``.
"""

import csv
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops
from PIL import Image

from anomalib_kd_ext.deploy import DeployError, OpenVINOScorer, main, read_image, score_folder
from helpers import needs_tmpfs, on_small_disk

MAP_SIZE = 32


def _axes(*values: int) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def save_toy_model(path: Path, input_size: tuple[int, int] | None = None) -> Path:
    """Write an OpenVINO model with anomalib's inputs and outputs; static spatial size when ``input_size``."""
    height, width = input_size or (-1, -1)
    image = ops.parameter(ov.PartialShape([-1, 3, height, width]), ov.Type.f32, name="input")
    mean = ops.reduce_mean(image, _axes(1), keep_dims=True)
    anomaly_map = ops.interpolate(mean, _axes(MAP_SIZE, MAP_SIZE), "linear", "sizes", axes=_axes(2, 3))
    score = ops.reduce_max(anomaly_map, _axes(2, 3), keep_dims=False)
    label = ops.greater_equal(score, ops.constant(np.float32(0.5)))
    for node, name in ((anomaly_map, "anomaly_map"), (score, "pred_score"), (label, "pred_label")):
        node.output(0).get_tensor().set_names({name})
    ov.save_model(ov.Model([score, label, anomaly_map], [image], "toy"), str(path))
    return path


@pytest.fixture
def toy_model(tmp_path: Path) -> Path:
    """The toy OpenVINO model with dynamic input size."""
    return save_toy_model(tmp_path / "model" / "model.xml")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A bright and a dark RGB image, a grayscale image of another size in a subfolder, and an RGBA image."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 230, np.uint8)).save(folder / "bright.png")
    Image.fromarray(np.full((40, 60, 3), 20, np.uint8)).save(folder / "dark.jpg", quality=100)
    Image.fromarray(np.full((25, 35), 128, np.uint8), mode="L").save(folder / "sub" / "gray.png")
    Image.fromarray(np.full((30, 30, 4), 200, np.uint8), mode="RGBA").save(folder / "rgba.png")
    return folder


def test_scores_folder_and_writes_overlays(toy_model: Path, images: Path, tmp_path: Path) -> None:
    """Every image of the folder is scored and written to CSV and JSON, with overlays at each image's size."""
    output = tmp_path / "out"
    rows = score_folder(toy_model, images, output)
    by_name = {row["image"]: row for row in rows}
    assert sorted(by_name) == ["bright.png", "dark.jpg", "rgba.png", "sub/gray.png"]
    assert by_name["bright.png"]["pred_score"] == pytest.approx(230 / 255, abs=1e-5)
    assert by_name["bright.png"]["pred_label"] is True
    assert by_name["dark.jpg"]["pred_label"] is False
    assert by_name["sub/gray.png"]["pred_score"] == pytest.approx(128 / 255, abs=1e-5)
    with (output / "scores.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert json.loads((output / "scores.json").read_text())["skipped"] == []
    # Overlays come back at each image's own size.
    assert Image.open(output / "overlays" / "sub" / "gray.png").size == (35, 25)
    assert Image.open(output / "overlays" / "dark.png").size == (60, 40)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # staging folder removed


def test_map_is_resized_back_to_the_image(toy_model: Path) -> None:
    """The anomaly map comes back at the image's size, in the right place."""
    scorer = OpenVINOScorer(toy_model)
    image = np.zeros((50, 90, 3), np.float32)
    image[:, 45:] = 1.0
    prediction = scorer(image)
    assert prediction["anomaly_map"].shape == (50, 90)
    assert prediction["anomaly_map"][:, :40].max() < 0.1
    assert prediction["anomaly_map"][:, 50:].min() > 0.9


def test_static_input_model_gets_resized_images(tmp_path: Path) -> None:
    """A static-size model gets images resized to its input; map at the image's size."""
    scorer = OpenVINOScorer(save_toy_model(tmp_path / "static.xml", input_size=(64, 64)))
    assert scorer.input_size == (64, 64)
    prediction = scorer(np.full((30, 100, 3), 0.75, np.float32))
    assert prediction["pred_score"] == pytest.approx(0.75, abs=1e-5)
    assert prediction["anomaly_map"].shape == (30, 100)


def test_dynamic_batch_axis_is_fixed_to_one_image(tmp_path: Path) -> None:
    """Anomalib exports a dynamic batch axis; the scorer compiles batch 1 (fused post-processing), same scores."""
    path = save_toy_model(tmp_path / "static.xml", input_size=(64, 64))
    assert ov.Core().read_model(str(path)).inputs[0].get_partial_shape()[0].is_dynamic
    scorer = OpenVINOScorer(path)
    assert scorer.compiled.inputs[0].get_partial_shape() == ov.PartialShape([1, 3, 64, 64])
    image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    # f32 as the scorer: without the hint OpenVINO runs FP32 models in bf16 on CPUs with AVX-512 BF16
    dynamic = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(
        image.transpose(2, 0, 1)[None],
    )
    assert scorer(image)["pred_score"] == pytest.approx(float(dynamic["pred_score"].reshape(-1)[0]), abs=1e-6)
    assert OpenVINOScorer(save_toy_model(tmp_path / "any.xml")).compiled.inputs[0].get_partial_shape()[0].is_dynamic


def test_reads_images_like_anomalib(images: Path) -> None:
    """``read_image`` gives anomalib's ``read_image`` values for RGB, RGBA and grey images."""
    from anomalib.data.utils import read_image as anomalib_read_image

    for name in ("bright.png", "rgba.png", "sub/gray.png"):
        np.testing.assert_allclose(read_image(images / name), anomalib_read_image(images / name), atol=1e-6)


def test_missing_model_file_names_the_path(tmp_path: Path, images: Path) -> None:
    """A missing model file is named with the export command; nothing is written."""
    with pytest.raises(DeployError, match=r"missing\.xml.*anomalib export"):
        score_folder(tmp_path / "missing.xml", images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_bin_file(toy_model: Path, images: Path, tmp_path: Path) -> None:
    """A model.xml without its model.bin is refused, naming ``model.bin``."""
    toy_model.with_suffix(".bin").unlink()
    with pytest.raises(DeployError, match=r"model\.bin"):
        score_folder(toy_model, images, tmp_path / "out")


def test_missing_or_empty_image_folder(toy_model: Path, tmp_path: Path) -> None:
    """A missing image folder and a folder without images are refused."""
    with pytest.raises(DeployError, match="does not exist"):
        score_folder(toy_model, tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match="No image"):
        score_folder(toy_model, tmp_path / "empty", tmp_path / "out")


def test_corrupt_image_stops_without_writing(toy_model: Path, images: Path, tmp_path: Path) -> None:
    """A corrupt image stops scoring, naming it and ``--skip-unreadable``; no output or staging folder left."""
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (images / "zero.png").write_bytes(b"")
    output = tmp_path / "out"
    with pytest.raises(DeployError, match=r"broken\.png.*--skip-unreadable"):
        score_folder(toy_model, images, output)
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_skip_unreadable_lists_the_files(toy_model: Path, images: Path, tmp_path: Path) -> None:
    """``skip_unreadable`` scores the readable images and lists the skipped file in scores.json."""
    (images / "zero.png").write_bytes(b"")
    rows = score_folder(toy_model, images, tmp_path / "out", skip_unreadable=True, overlays=False)
    assert len(rows) == 4
    skipped = json.loads((tmp_path / "out" / "scores.json").read_text())["skipped"]
    assert [Path(s["image"]).name for s in skipped] == ["zero.png"]
    assert not (tmp_path / "out" / "overlays").exists()


def test_not_an_anomalib_model(tmp_path: Path, images: Path) -> None:
    """A model without anomalib's outputs is refused."""
    image = ops.parameter(ov.PartialShape([-1, 3, -1, -1]), ov.Type.f32, name="input")
    ov.save_model(ov.Model([ops.relu(image)], [image], "other"), str(tmp_path / "other.xml"))
    with pytest.raises(DeployError, match="not an anomalib model"):
        score_folder(tmp_path / "other.xml", images, tmp_path / "out")


def test_command_line_without_torch(toy_model: Path, images: Path, tmp_path: Path) -> None:
    """The command runs and never imports torch or anomalib (a line PC needs only OpenVINO)."""
    code = (
        "import sys; from anomalib_kd_ext.deploy import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules and 'anomalib' not in sys.modules, 'training stack imported'; "
        "sys.exit(rc)"
    )
    output = tmp_path / "cli_out"
    result = subprocess.run(  # noqa: S603  # this interpreter running the test's own code
        [sys.executable, "-c", code, str(toy_model), str(images), "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"Scored 4 images \(3 anomalous, [0-9.]+ images/s, throughput mode\)", result.stdout)
    assert (output / "scores.csv").is_file()


def test_command_line_error_exit_code(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture) -> None:
    """The command exits with code 2 and names the missing model file."""
    assert main([str(tmp_path / "missing.xml"), str(images)]) == 2
    assert "missing.xml" in capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_full_disk_keeps_the_previous_results(
    toy_model: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """A disk that fills up while the results are written: exit code 3, a short message, the old results intact."""
    output = tmp_path / "out"
    score_folder(toy_model, images, output)
    before = _snapshot(output)
    (images / "new.png").write_bytes((images / "bright.png").read_bytes())
    save = Image.Image.save
    calls = []

    def fills_up(self: Image.Image, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(args[0]))
        save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fills_up)
    code = main([str(toy_model), str(images), "--output", str(output)])
    assert code == 3
    error = capsys.readouterr().err
    assert "could not write the results" in error
    assert "No space left on device" in error
    assert len(error.strip().splitlines()) == 1
    assert _snapshot(output) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images", "model", "out"]


@needs_tmpfs
def test_really_full_disk_keeps_the_previous_results(toy_model: Path, tmp_path: Path) -> None:
    """A 512 kB tmpfs: a first scoring fits, a larger second one fills the disk; exit 3, old results byte-identical."""
    rng = np.random.default_rng(0)
    images = tmp_path / "many"
    images.mkdir()
    for index in range(12):  # incompressible overlays of ~190 kB each
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)).save(images / f"{index:02d}.png")
    disk = tmp_path / "disk"
    script = textwrap.dedent(f"""
        import hashlib, pathlib, sys
        from anomalib_kd_ext.deploy import main
        out = pathlib.Path("{disk}/run/out")
        first = main(["{toy_model}", "{images}", "--output", str(out), "--no-overlays"])
        def snapshot():
            return {{
                str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in out.rglob("*") if p.is_file()
            }}
        before = snapshot()
        second = main(["{toy_model}", "{images}", "--output", str(out)])
        print("CODES", first, second)
        print("SAME", snapshot() == before, sorted(before))
        print("LEFT", sorted(p.name for p in out.parent.iterdir()))
    """)
    result = on_small_disk(disk, "512k", [sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].startswith("Scored 12 images")  # the first, scores-only run fits
    assert result.stdout.splitlines()[1:] == ["CODES 0 3", "SAME True ['scores.csv', 'scores.json']", "LEFT ['out']"]
    assert "No space left on device" in result.stderr
    assert "was left as it was" in result.stderr


def test_failed_move_into_place_restores_the_previous_results(
    toy_model: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If moving the finished results into place fails, the previous results are put back."""
    output = tmp_path / "out"
    score_folder(toy_model, images, output, overlays=False)
    before = _snapshot(output)
    rename = Path.rename

    def fails_for_staging(self: Path, target: Path) -> Path:
        if self.name.startswith(".out.") and self.name != ".out.previous" and Path(target) == output:
            raise OSError(5, "Input/output error")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", fails_for_staging)
    with pytest.raises(OSError, match="Input/output error"):
        score_folder(toy_model, images, output, overlays=False)
    assert _snapshot(output) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images", "model", "out"]


def test_read_only_output_location_is_a_clear_error(
    toy_model: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An output folder on a read-only file system stops before scoring, naming the folder and the fix."""
    import tempfile

    def read_only(*args: object, **kwargs: object) -> str:
        del args, kwargs
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(DeployError, match=r"Cannot write results next to .*out.*Read-only file system.*writable"):
        score_folder(toy_model, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_throughput_mode_gives_the_latency_scores_in_order(toy_model: Path, tmp_path: Path) -> None:
    """Parallel infer requests change the speed, not the scores or their order (40 images of 3 sizes)."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(40):
        size = (24 + 8 * (index % 3), 40)
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(folder / f"{index:03d}.png")
    latency = score_folder(toy_model, folder, tmp_path / "latency", mode="latency", overlays=False)
    throughput = score_folder(toy_model, folder, tmp_path / "throughput", mode="throughput", overlays=False)
    assert [row["image"] for row in throughput] == [f"{index:03d}.png" for index in range(40)]
    assert [row["image"] for row in latency] == [row["image"] for row in throughput]
    for a, b in zip(latency, throughput, strict=True):
        assert a["pred_score"] == pytest.approx(b["pred_score"], abs=1e-6)
        assert a["anomaly_map_max"] == pytest.approx(b["anomaly_map_max"], abs=1e-6)
    summary = json.loads((tmp_path / "throughput" / "scores.json").read_text())
    assert summary["mode"] == "throughput"
    assert summary["infer_requests"] >= 1
    assert summary["images_per_second"] > 0
    assert json.loads((tmp_path / "latency" / "scores.json").read_text())["infer_requests"] >= 1


def test_scorer_yields_keys_images_and_predictions_in_order(toy_model: Path) -> None:
    """``score_many`` in throughput mode yields each key, its image and prediction, in input order."""
    scorer = OpenVINOScorer(toy_model, mode="throughput")
    images = [np.full((20, 30, 3), value / 10, np.float32) for value in range(10)]
    results = list(scorer.score_many(enumerate(images)))
    assert [key for key, _, _ in results] == list(range(10))
    assert all(image is images[key] for key, image, _ in results)
    assert [prediction["pred_score"] for _, _, prediction in results] == pytest.approx([v / 10 for v in range(10)])
    assert results[3][2]["anomaly_map"].shape == (20, 30)


def test_unknown_mode_is_refused(toy_model: Path) -> None:
    """An unknown performance mode is refused."""
    with pytest.raises(DeployError, match="Unknown mode 'fast'"):
        OpenVINOScorer(toy_model, mode="fast")


def test_progress_line_counts_to_the_total(
    toy_model: Path,
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """``progress`` prints a line on stderr that counts to all images and ends with the rate."""
    score_folder(toy_model, images, tmp_path / "out", overlays=False, progress=True)
    err = capsys.readouterr().err
    assert "scored 4/4 images, " in err
    assert err.endswith(" images/s\n")
