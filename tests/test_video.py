"""Expressions in videos: frames thinned, faces tracked from frame to frame, the command line's lines,
annotated video, summary and bad input, on a clip written with OpenCV from scikit-image's astronaut."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import DataError
from fer_core.faces import Box
from fer_core.video import FaceTracker, VideoInfo, check_video, frame_times, iou

ROOT = Path(__file__).resolve().parents[1]
FRAMES, FPS, SIZE = 30, 10.0, (640, 480)  # width, height: a webcam's


def write_drifting_clip(path: Path, frames: int = FRAMES) -> Path:
    """A 640x480 clip of the astronaut drifting from left to right across a grey picture, 10 px a frame."""
    import cv2
    from skimage.data import astronaut

    person = cv2.cvtColor(astronaut()[20:340, 80:400], cv2.COLOR_RGB2BGR)  # her head and shoulders, 320x320
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = np.clip(128 + rng.normal(0, 6, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
        x = 10 + 10 * i
        frame[80:400, x:x + 320] = person
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) gives the astronaut photo")
    return write_drifting_clip(tmp_path_factory.mktemp("video") / "drift.mp4")


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_core.predict", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


# ----------------------------------------------------------------------------- the parts

def test_iou_is_one_for_the_same_box_and_zero_apart() -> None:
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(10, 0, 10, 10)) == 0.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_a_face_keeps_its_track_while_it_overlaps_and_a_new_one_starts_a_track() -> None:
    tracker = FaceTracker(gap_s=1.0)
    assert tracker.assign([Box(100, 100, 80, 80)], 0.0) == [0]
    # she moves a little; a second person appears on the left: largest first, as detection gives them
    assert tracker.assign([Box(110, 100, 80, 80), Box(400, 90, 60, 60)], 0.1) == [0, 1]
    assert tracker.assign([Box(400, 92, 60, 60), Box(120, 100, 80, 80)], 0.2) == [1, 0]  # order does not matter
    assert tracker.assign([Box(500, 300, 80, 80)], 0.3) == [2]  # no overlap: somebody else
    assert tracker.assign([Box(125, 100, 80, 80)], 1.1) == [0]  # back within the gap
    assert tracker.assign([Box(125, 100, 80, 80)], 5.0) == [3]  # unseen for longer: a new track


def test_frames_are_thinned_by_count_or_by_rate() -> None:
    info = VideoInfo(fps=30.0, frames=90, width=640, height=480)
    assert [i for i, _, a in frame_times(info, every=1) if a] == list(range(90))
    assert [i for i, _, a in frame_times(info, every=4) if a] == list(range(0, 90, 4))
    assert [i for i, _, a in frame_times(info, fps=5.0) if a] == list(range(0, 90, 6))  # 5 of 30 a second
    assert [i for i, _, a in frame_times(info, fps=100.0) if a] == list(range(90))  # never more than it has


def test_an_unreadable_or_empty_video_is_a_data_error_naming_it(tmp_path: Path) -> None:
    import cv2

    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(DataError, match="notes.mp4"):
        check_video(text)
    empty = tmp_path / "empty.mp4"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE).release()
    with pytest.raises(DataError, match="empty.mp4"):
        check_video(empty)


# ----------------------------------------------------------------------------- a real clip, a real model

@pytest.mark.slow
def test_the_drifting_astronaut_is_one_track_in_every_frame(predictor, clip: Path) -> None:
    frames = list(predictor.predict_video(clip))
    assert [f.frame for f in frames] == list(range(FRAMES))
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    assert all(len(f.faces) == 1 for f in frames), [len(f.faces) for f in frames]
    assert {f.faces[0].face for f in frames} == {0}
    xs = [f.faces[0].box.x for f in frames]
    assert xs[-1] - xs[0] == pytest.approx(10 * (FRAMES - 1), abs=15)  # the box follows her
    thinned = list(predictor.predict_video(clip, every=3))
    assert [f.frame for f in thinned] == list(range(0, FRAMES, 3)) and {f.faces[0].face for f in thinned} == {0}


@pytest.mark.slow
def test_the_command_line_prints_a_line_per_frame_and_writes_the_annotated_video(model_dir: Path, clip: Path,
                                                                                  tmp_path: Path) -> None:
    import cv2

    output = tmp_path / "out"
    result = _predict("--model", str(model_dir), str(clip), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert {line["face"] for line in lines} == {0} and all(line["file"] == str(clip) for line in lines)
    assert "drift.mp4: face 0: 30 frames, 0.0-2.9 s:" in result.stderr  # the summary
    assert sorted(p.name for p in output.iterdir()) == ["drift.annotated.mp4", "drift.summary.json",
                                                        "drift.timeline.png", "predictions.csv"]
    capture = cv2.VideoCapture(str(output / "drift.annotated.mp4"))
    written = 0
    while capture.read()[0]:
        written += 1
    assert written == FRAMES
    summary = json.loads((output / "drift.summary.json").read_text())
    assert summary["analysed_frames"] == FRAMES and list(summary["faces"]) == ["0"]
    assert sum(summary["faces"]["0"]["share"].values()) == pytest.approx(1.0, abs=1e-3)
    with open(output / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES)) and {r["face"] for r in rows} == {"0"}


@pytest.mark.slow
def test_fps_thins_the_frames_the_command_line_analyses(model_dir: Path, clip: Path) -> None:
    result = _predict("--model", str(model_dir), str(clip), "--fps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line)["frame"] for line in result.stdout.splitlines()] == [0, 5, 10, 15, 20, 25]


@pytest.mark.slow
@pytest.mark.parametrize("flags, expected", [
    (["--every", "0"], "--every 0: expected a number of frames, at least 1"),
    (["--fps", "-1"], "--fps -1.0: expected frames a second, more than 0"),
    (["--every", "2", "--fps", "3"], "not allowed with argument"),
])
def test_bad_thinning_is_one_line_and_exit_2(model_dir: Path, clip: Path, flags: list[str], expected: str) -> None:
    result = _predict("--model", str(model_dir), str(clip), *flags)
    assert result.returncode == 2 and expected in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_an_unreadable_video_is_one_line_exit_2_and_nothing_written(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "session.mp4"
    broken.write_bytes(b"\x00" * 1000)
    output = tmp_path / "out"
    result = _predict("--model", str(model_dir), str(broken), "--output", str(output))
    assert result.returncode == 2 and "session.mp4" in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["session.mp4"]
