"""Name the expressions in a video: every analysed frame's faces, each followed over time as one track.

A video is read with OpenCV (any format its wheel decodes), every ``every``-th frame or at most
``fps`` frames a second analysed; each analysed frame is made grayscale with the same ITU-R 601-2
luma as photos, and its faces are found, cropped and classified by a
:class:`fer_core.predictor.Predictor`. A face keeps its track id (``face``) from frame to frame
while its box overlaps the track's last one (:class:`FaceTracker`), so one person's expressions
can be followed through a session. :func:`summarize` gives each track's share of time per
expression; :class:`AnnotatedVideo` writes the video back with boxes and labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np

from fer_core.errors import DataError
from fer_core.faces import Box
from fer_core.runtime import stderr_muted

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
TRACK_IOU = 0.3  # a face continues a track when its box overlaps the track's last box at least this much
TRACK_GAP_S = 1.0  # ... and the track was seen this recently: a face lost for longer starts a new track
DEFAULT_FPS = 30.0  # the frame rate assumed for a file that does not say its own
NO_FACE = "no face found"
BOX_BGR = (64, 64, 255)  # the photos' box colour, in OpenCV's channel order


class FacePredictor(Protocol):
    """What :func:`predict_video` needs of a predictor: :meth:`fer_core.predictor.Predictor.predict`."""

    def predict(self, image: np.ndarray, min_face: Optional[int] = None) -> list: ...


@dataclass(frozen=True)
class TrackedFace:
    """One face in one analysed frame: its track id (``face``), box and what the model calls it."""

    face: int
    box: Box
    label: str
    confidence: float
    probabilities: Mapping[str, float]


@dataclass(frozen=True)
class VideoFrame:
    """An analysed frame: its index in the video, its time, and its faces (largest first)."""

    frame: int
    time_s: float
    faces: tuple[TrackedFace, ...] = ()

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per face (``frame``, ``time_s``, ``face``, ``box`` as ``[x, y, w, h]``,
        ``label``, ``confidence``, ``probabilities``), or one saying that the frame has no face."""
        where = {"frame": self.frame, "time_s": round(self.time_s, 3)}
        if not self.faces:
            return [{**where, "face": None, "label": None, "note": NO_FACE}]
        return [{**where, "face": f.face, "box": [f.box.x, f.box.y, f.box.w, f.box.h], "label": f.label,
                 "confidence": round(f.confidence, 4),
                 "probabilities": {name: round(p, 4) for name, p in f.probabilities.items()}} for f in self.faces]


def iou(a: Box, b: Box) -> float:
    """The boxes' intersection over their union: 1 for the same box, 0 for boxes apart."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, width) * max(0, height)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass
class FaceTracker:
    """Track ids for the faces of successive frames: a face takes the id of the recent track whose
    last box it overlaps most (at least :data:`TRACK_IOU`), the largest faces choosing first; any
    other face starts a new track. A track unseen for more than ``gap_s`` seconds ends."""

    gap_s: float = TRACK_GAP_S
    _last: dict[int, tuple[Box, float]] = field(default_factory=dict)  # id -> (box, time seen)
    _next: int = 0

    def assign(self, boxes: Sequence[Box], time_s: float) -> list[int]:
        """The track id of each of ``boxes`` (one frame's faces, at ``time_s``)."""
        recent = {i: box for i, (box, seen) in self._last.items() if time_s - seen <= self.gap_s}
        pairs = sorted(((iou(box, last), -box.area, j, i) for j, box in enumerate(boxes)
                        for i, last in recent.items()), reverse=True)
        ids: dict[int, int] = {}
        for overlap, _, j, i in pairs:
            if overlap < TRACK_IOU:
                break
            if j not in ids and i not in ids.values():
                ids[j] = i
        for j in range(len(boxes)):
            if j not in ids:
                ids[j], self._next = self._next, self._next + 1
        for j, box in enumerate(boxes):
            self._last[ids[j]] = (box, time_s)
        return [ids[j] for j in range(len(boxes))]


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says of itself: frames a second, frame count (0 when unknown), frame size."""

    fps: float
    frames: int
    width: int
    height: int


def open_video(path: str | Path):
    """An OpenCV capture of ``path`` and its :class:`VideoInfo`; a file OpenCV cannot read, or one
    without a frame, raises :class:`DataError` naming it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a video file ({', '.join(VIDEO_SUFFIXES)})")
    with stderr_muted():  # FFmpeg's own line about a broken file; the error below says it in one
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot read this video; expected a file OpenCV decodes (e.g. MP4 or AVI)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(fps=fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS,
                     frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
                     width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return capture, info


def check_video(path: str | Path) -> VideoInfo:
    """:class:`VideoInfo` of a video with at least one decodable frame, else :class:`DataError` naming it."""
    capture, info = open_video(path)
    try:
        with stderr_muted():
            ok, _ = capture.read()
    finally:
        capture.release()
    if not ok:
        raise DataError(f"{path}: no frame could be decoded; expected a video with at least one frame")
    return info


def frame_times(info: VideoInfo, every: int = 1, fps: Optional[float] = None) -> Iterator[tuple[int, float, bool]]:
    """``(index, time_s, analysed)`` for every frame of the video: every ``every``-th frame is analysed,
    or, with ``fps``, the first frame at or after each 1/``fps`` seconds (never more than the video has)."""
    index, next_time = 0, 0.0
    while info.frames == 0 or index < info.frames:
        time_s = index / info.fps
        if fps is not None:
            analysed = time_s + 1e-9 >= next_time
            if analysed:
                next_time += 1.0 / fps
        else:
            analysed = index % every == 0
        yield index, time_s, analysed
        index += 1


def predict_video(predictor: FacePredictor, path: str | Path, every: int = 1, fps: Optional[float] = None,
                  min_face: Optional[int] = None,
                  each_frame: Optional[Callable[[np.ndarray, Optional[VideoFrame]], None]] = None
                  ) -> Iterator[VideoFrame]:
    """Each analysed frame of the video at ``path`` with its tracked faces (see the module).

    ``every``: analyse every ``every``-th frame; ``fps``: at most this many frames a second
    instead. ``min_face`` as :meth:`fer_core.predictor.Predictor.predict` takes it.
    ``each_frame(image, frame)`` is called with every decoded frame (BGR, as OpenCV gives it)
    and its :class:`VideoFrame` (None for a frame not analysed), for a caller that writes the
    video back (:class:`AnnotatedVideo`); without it, skipped frames are not decoded.
    """
    import cv2

    if every < 1 or (fps is not None and not fps > 0):
        raise DataError(f"every={every}, fps={fps}: expected every >= 1 and fps > 0")
    capture, info = open_video(path)
    tracker = FaceTracker()
    decoded = False
    try:
        for index, time_s, analysed in frame_times(info, every, fps):
            if not analysed and each_frame is None:
                if not capture.grab():
                    break
                continue
            ok, image = capture.read()
            if not ok:
                break
            decoded = True
            if not analysed:
                each_frame(image, None)
                continue
            faces = predictor.predict(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), min_face=min_face)
            ids = tracker.assign([f.box for f in faces], time_s)
            frame = VideoFrame(index, time_s, tuple(TrackedFace(i, f.box, f.label, f.confidence, f.probabilities)
                                                    for i, f in zip(ids, faces)))
            if each_frame is not None:
                each_frame(image, frame)
            yield frame
    finally:
        capture.release()
    if not decoded:
        raise DataError(f"{path}: no frame could be decoded; expected a video with at least one frame")


def summarize(frames: Sequence[VideoFrame], class_names: Sequence[str]) -> dict[int, dict[str, Any]]:
    """Per track: the analysed frames it is in, the seconds from its first to its last, and its share of
    those frames per expression (each class, in ``class_names``' order)."""
    tracks: dict[int, list[tuple[float, str]]] = {}
    for frame in frames:
        for face in frame.faces:
            tracks.setdefault(face.face, []).append((frame.time_s, face.label))
    summary = {}
    for track, seen in sorted(tracks.items()):
        labels = [label for _, label in seen]
        summary[track] = {"frames": len(seen), "first_s": round(seen[0][0], 3), "last_s": round(seen[-1][0], 3),
                          "share": {name: round(labels.count(name) / len(labels), 4) for name in class_names}}
    return summary


def summary_lines(summary: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """The summary in words, a line per track: ``face 0: 30 frames, 0.0-1.0 s: happy 80%, neutral 20%``."""
    lines = []
    for track, row in summary.items():
        shares = sorted(((share, name) for name, share in row["share"].items() if share > 0), reverse=True)
        lines.append(f"face {track}: {row['frames']} frames, {row['first_s']:.1f}-{row['last_s']:.1f} s: "
                     + ", ".join(f"{name} {share:.0%}" for share, name in shares))
    return lines


def plot_timeline(frames: Sequence[VideoFrame], class_names: Sequence[str]) -> bytes:
    """PNG of each track's expression over time: one row of coloured marks per track."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted({f.face for frame in frames for f in frame.faces})
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.5 * max(1, len(tracks))))
    colours = plt.get_cmap("tab10")
    for k, name in enumerate(class_names):
        points = [(frame.time_s, tracks.index(f.face)) for frame in frames for f in frame.faces if f.label == name]
        if points:
            ax.scatter(*zip(*points), s=12, marker="s", color=colours(k % 10), label=name)
    ax.set_yticks(range(len(tracks)), [f"face {t}" for t in tracks])
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


class AnnotatedVideo:
    """Writes frames back as an MP4 with each analysed frame's boxes and labels, held until the next
    analysed frame, so the annotated video plays at the original's speed."""

    def __init__(self, target: Path, info: VideoInfo) -> None:
        import cv2

        self._writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), info.fps,
                                       (info.width, info.height))
        self._faces: tuple[TrackedFace, ...] = ()

    def write(self, image: np.ndarray, frame: Optional[VideoFrame]) -> None:
        """Write ``image`` (BGR) with the faces of ``frame``, or of the last analysed frame when None."""
        import cv2

        if frame is not None:
            self._faces = frame.faces
        thick = max(2, round(max(image.shape[:2]) / 160))
        for face in self._faces:
            b = face.box
            cv2.rectangle(image, (b.x, b.y), (b.x + b.w - 1, b.y + b.h - 1), BOX_BGR, thick)
            cv2.putText(image, f"{face.face}: {face.label} {face.confidence:.0%}", (b.x, max(12, b.y - 2 * thick)),
                        cv2.FONT_HERSHEY_SIMPLEX, max(0.4, b.w / 160), BOX_BGR, max(1, thick // 2))
        self._writer.write(image)

    def close(self) -> None:
        """Finish the file."""
        self._writer.release()
