"""Find the faces in photos and videos and name their expressions with an exported model.

The command line over :class:`fer_core.predictor.Predictor`, for photos, folders and videos::

    python -m fer_core.predict photo.jpg folder/ [--output annotated/]
    python -m fer_core.predict --model runs/NAME/best clip.mp4 [--fps 5 | --every 3] [--output out/]

Without ``--model`` the FER2013 model bundled with FER Tune names them (:mod:`fer_core.bundled`);
``--model`` takes any run's ``best/`` folder.

It prints one JSON line per face (a photo or frame without a face gets one line saying so);
a video's lines also carry ``frame``, ``time_s`` and the face's track id, and a summary of each
tracked face's share of time per expression ends its run. With ``--output`` it writes each photo
annotated with its boxes and labels, each video annotated (``NAME.annotated.mp4``) with its
summary (``NAME.summary.json``) and timeline (``NAME.timeline.png``), and a ``predictions.csv``,
all at once at the end. Bad input (a file that is not an image or a readable video, an empty
folder, a model folder without its card, a model unlike its card) is one line
``predict: error: ...`` and exit status 2, with nothing written; unreadable files inside a
folder are warned about and skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from fer_core.images import IMAGE_SUFFIXES, read_gray
from fer_core.errors import DataError, FerInputError, run_cli
from fer_core.faces import MIN_FACE
from fer_core.predictor import BACKENDS, Face, Predictor
from fer_core.staging import staging_folder
from fer_core.video import (VIDEO_SUFFIXES, AnnotatedVideo, VideoFrame, check_video, frame_times, plot_timeline,
                            predict_video, summarize, summary_lines)

log = logging.getLogger(__name__)

CSV_FILE = "predictions.csv"
ANNOTATED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # kept for annotated photos; others become .png
PROGRESS_OVER_PHOTOS = 2  # more photos than this show a progress bar (on a terminal)
NO_FACE = "no face found"
# Annotation: box and text sizes follow the photo's size, so they read alike on a thumbnail and a poster.
BOX_COLOR = (255, 64, 64)
TEXT_COLOR = (255, 255, 255)
LINE_SHARE = 1 / 160  # box line width: this share of the photo's longer side, at least 2 px
FONT_SHARE = 1 / 28  # label height: this share of the photo's longer side, at least 12 px


@dataclass(frozen=True)
class Photo:
    """One image file to look at: its path, and its name under ``--output`` (relative, unique)."""

    path: Path
    out_name: str
    in_folder: bool  # found by walking a folder: an unreadable file is a warning, not an error


def find_photos(inputs: Sequence[str | os.PathLike], skip: Optional[Path] = None) -> list[Photo]:
    """The image files of ``inputs`` (files as given; folders walked for image files, sorted).

    Names under ``--output`` keep a folder's layout below the folder's own name, so two
    ``face.jpg`` in different folders do not overwrite each other. A missing path or a
    folder without image files raises :class:`DataError`; ``skip`` (the output folder) is
    not walked.
    """
    photos: list[Photo] = []
    taken: set[str] = set()

    def add(path: Path, name: str, in_folder: bool) -> None:
        if Path(name).suffix.lower() not in ANNOTATED_SUFFIXES:
            name = str(Path(name).with_suffix(".png"))
        stem, suffix, n = Path(name).with_suffix(""), Path(name).suffix, 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}{suffix}"
        taken.add(name.lower())
        photos.append(Photo(path, name, in_folder))

    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in sorted(item.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(item).parts)
                     and not (skip is not None and p.resolve().is_relative_to(skip.resolve()))]
            if not found:
                raise DataError(f"{item}: no image files in this folder or below; expected files ending in "
                                f"{', '.join(IMAGE_SUFFIXES)}")
            for path in found:
                add(path, str(Path(item.resolve().name or "root") / path.relative_to(item)), True)
        elif item.is_file():
            add(item, item.name, False)
        else:
            raise DataError(f"{item}: no such file or folder; expected a photo or a folder of photos")
    return photos


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m fer_core.predict``: parse, load the model, look at each photo, print and write the results."""
    args = _parser().parse_args(argv)
    if args.min_face is not None and args.min_face < 1:
        raise FerInputError(f"--min-face {args.min_face}: expected a face side in pixels, at least 1")
    if args.every is not None and args.every < 1:
        raise FerInputError(f"--every {args.every}: expected a number of frames, at least 1")
    if args.fps is not None and not args.fps > 0:
        raise FerInputError(f"--fps {args.fps}: expected frames a second, more than 0")
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not output.is_dir():
        raise FerInputError(f"--output {output}: exists and is not a folder; expected a folder (made if missing)")
    videos = [Path(i) for i in args.inputs if Path(i).suffix.lower() in VIDEO_SUFFIXES]
    others = [i for i in args.inputs if Path(i).suffix.lower() not in VIDEO_SUFFIXES]
    photos = find_photos(others, skip=output) if others else []
    for photo in photos:  # files named directly must all be images: fail before printing anything
        if not photo.in_folder:
            read_gray(photo.path)
    for video in videos:
        check_video(video)
    predictor = Predictor.load(args.model, backend=args.backend)
    staging = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        # beside the output, so that the final rename stays on one file system
        staging = staging_folder(output)
    try:
        rows, counts = [], {"photos": 0, "faces": 0, "no_face": 0, "unreadable": 0}
        for photo, faces in _predict_all(predictor, photos, args.min_face, counts):
            for line in _json_lines(photo, faces, predictor):
                print(json.dumps(line), flush=True)
                rows.append(line)
            if staging is not None:
                annotate(photo.path, faces, staging / photo.out_name)
        if photos and counts["photos"] == 0:
            raise DataError(f"{', '.join(map(str, others))}: none of the {len(photos)} image files could be "
                            "read; expected readable PNG/JPEG/BMP files")
        for video in videos:
            rows += predict_one_video(predictor, video, args, staging)
        if staging is not None:
            write_csv(rows, predictor.class_names, staging / CSV_FILE)
            _move_into(staging, output)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    if photos:
        log.info("%d photo(s): %d face(s), %d without a face, %d unreadable", counts["photos"], counts["faces"],
                 counts["no_face"], counts["unreadable"])
    if output is not None:
        log.info("wrote %s", output)
    return 0


def predict_one_video(predictor: Predictor, path: Path, args: argparse.Namespace,
                      staging: Optional[Path]) -> list[dict[str, Any]]:
    """Print a JSON line per analysed frame and face of the video at ``path``, log its summary, and
    with ``staging`` write its annotated video, summary and timeline there; return its lines."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    info = check_video(path)
    every = args.every or 1
    model = {"model": predictor.card.get("name", "model"), "model_folder": str(predictor.folder)}
    writer = AnnotatedVideo(staging / f"{path.stem}.annotated.mp4", info) if staging is not None else None
    # the bar counts decoded frames when every frame is written back, else the analysed ones
    total = info.frames if writer is not None or not info.frames else \
        sum(a for _, _, a in frame_times(info, every, args.fps))  # frame_times never ends when the count is unknown
    bar = tqdm(total=total or None, desc=path.name, unit="frame", disable=None)

    def each_frame(image, frame: Optional[VideoFrame]) -> None:
        writer.write(image, frame)
        bar.update()

    frames: list[VideoFrame] = []
    rows: list[dict[str, Any]] = []
    try:
        with logging_redirect_tqdm():
            for frame in predict_video(predictor, path, every=every, fps=args.fps, min_face=args.min_face,
                                       each_frame=each_frame if writer is not None else None):
                frames.append(frame)
                for line in frame.records():
                    line = {"file": str(path), **line, **model}
                    print(json.dumps(line), flush=True)
                    rows.append(line)
                if writer is None:
                    bar.update()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    summary = summarize(frames, predictor.class_names)
    for line in summary_lines(summary) or [f"{NO_FACE} in any analysed frame"]:
        log.info("%s: %s", path.name, line)
    if staging is not None:
        (staging / f"{path.stem}.summary.json").write_text(json.dumps(
            {"file": str(path), "analysed_frames": len(frames), "fps": info.fps,
             "faces": {str(k): v for k, v in summary.items()}}, indent=2))
        (staging / f"{path.stem}.timeline.png").write_bytes(plot_timeline(frames, predictor.class_names))
    return rows


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line, ``predict: error: ...`` through ``run_cli``, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        raise FerInputError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fer_core.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a run's best/ folder (model files and model_card.json); default: the "
                                        "FER2013 model bundled with FER Tune")
    parser.add_argument("inputs", nargs="+", metavar="PHOTO_FOLDER_OR_VIDEO",
                        help=f"image files, folders to walk, or video files ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--output", help="folder for the annotated photos and videos, the videos' summaries and "
                                         "timelines, and predictions.csv (made or updated)")
    thinning = parser.add_mutually_exclusive_group()
    thinning.add_argument("--every", type=int, metavar="N", help="in a video, analyse every N-th frame (default 1)")
    thinning.add_argument("--fps", type=float, metavar="F", help="in a video, analyse at most F frames a second")
    parser.add_argument("--min-face", type=int, metavar="PX",
                        help=f"smallest face side looked for, in px (default: the model's input side, 48; "
                             f"{MIN_FACE} finds smaller faces, at twice the time)")
    parser.add_argument("--backend", choices=BACKENDS, default="keras", help="which exported form runs (default keras)")
    return parser


def _predict_all(predictor: Predictor, photos: Sequence[Photo], min_face: Optional[int],
                 counts: dict[str, int]) -> Iterator[tuple[Photo, list[Face]]]:
    """Each readable photo with its faces; unreadable files found in folders are warned about and skipped."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    # on a terminal only (disable=None); warnings go through the bar so that they do not break it
    bar = tqdm(photos, desc="photos", unit="photo", disable=None if len(photos) > PROGRESS_OVER_PHOTOS else True)
    with logging_redirect_tqdm():
        for photo in bar:
            try:
                gray = read_gray(photo.path)
            except DataError as exc:
                if not photo.in_folder:
                    raise
                counts["unreadable"] += 1
                log.warning("skipped: %s", exc)
                continue
            faces = predictor.predict(gray, min_face=min_face)
            counts["photos"] += 1
            counts["faces"] += len(faces)
            counts["no_face"] += not faces
            yield photo, faces


def _json_lines(photo: Photo, faces: list[Face], predictor: Predictor) -> list[dict[str, Any]]:
    model = {"model": predictor.card.get("name", "model"), "model_folder": str(predictor.folder)}
    if not faces:
        return [{"file": str(photo.path), "face": None, "label": None, "note": NO_FACE, **model}]
    return [{"file": str(photo.path), "face": i, **face.to_dict(), **model} for i, face in enumerate(faces)]


def annotate(path: Path, faces: Sequence[Face], target: Path) -> None:
    """Write the photo at ``path`` (colour, EXIF upright) to ``target`` with each face's box, label and confidence."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(path) as original:
        image = ImageOps.exif_transpose(original).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, round(side * LINE_SHARE))
    try:
        font = ImageFont.load_default(size=max(12, round(side * FONT_SHARE)))
    except TypeError:  # Pillow 10.0 has only its small bitmap font
        font = ImageFont.load_default()
    for face in faces:
        b = face.box
        draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=BOX_COLOR, width=width)
        text = f"{face.label} {face.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = width
        # above the box where there is room, else inside its top edge
        y = b.y - (bottom - top) - 2 * pad if b.y >= (bottom - top) + 2 * pad else b.y
        draw.rectangle([b.x, y, b.x + right - left + 2 * pad, y + bottom - top + 2 * pad], fill=BOX_COLOR)
        draw.text((b.x + pad - left, y + pad - top), text, fill=TEXT_COLOR, font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)


def write_csv(rows: Sequence[dict[str, Any]], class_names: Sequence[str], target: Path) -> None:
    """``predictions.csv``: one row per face (file, face, box, label, confidence, each class's probability);
    with videos among the inputs, each row also says its ``frame`` and ``time_s`` (empty for a photo)."""
    timed = ["frame", "time_s"] if any("frame" in row for row in rows) else []
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *timed, "face", "x", "y", "w", "h", "label", "confidence", *class_names, "note"])
        for row in rows:
            when = [row.get(key, "") for key in timed]
            if row["face"] is None:
                writer.writerow([row["file"], *when, "", "", "", "", "", "", "", *[""] * len(class_names),
                                 row["note"]])
                continue
            writer.writerow([row["file"], *when, row["face"], *row["box"], row["label"], row["confidence"],
                             *(row["probabilities"][n] for n in class_names), ""])


def _move_into(staging: Path, output: Path) -> None:
    """Move the finished files into ``output``: one rename when it is new, else file by file (each atomic)."""
    if not output.exists():
        os.replace(staging, output)
        return
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = output / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.exit(run_cli(main, prog="predict"))
