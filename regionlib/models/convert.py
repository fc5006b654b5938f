"""``python -m regionlib.models.convert SRC DST [--image-video-joint]``: a released DAM / SCA checkpoint
(`regionlib.models.released`) converted once into regionlib's ``save_pretrained`` format, which
``RegionModel.from_pretrained(DST)`` then opens without converting again.

DST must not exist yet (nothing is overwritten); the conversion is written to a temporary folder beside
it and renamed into place when complete. Exit status 0 on success; a checkpoint that does not convert
prints the `CheckpointError` (naming the field or key) and exits 2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import RegionLibError

__all__ = ["convert", "main"]


def convert(src: str | Path, dst: str | Path, *, image_video_joint: bool = False) -> Path:
    """Convert the released checkpoint ``src`` into a new regionlib checkpoint directory ``dst``."""
    from .released import load_released, released_kind

    src, dst = Path(src), Path(dst)
    if released_kind(src) is None:
        raise RegionLibError(f"{str(src)!r} is not a released DAM or SCA checkpoint directory (config.json with "
                             "model_type llava_llama or sca)")
    if dst.exists() or dst.is_symlink():
        raise RegionLibError(f"{str(dst)!r} already exists; choose a new output directory")
    model = load_released(src, image_video_joint=image_video_joint)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        model.save_pretrained(tmp)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regionlib.models.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="a released DAM (nvidia/DAM-3B layout) or SCA checkpoint directory")
    parser.add_argument("dst", help="the new regionlib checkpoint directory (must not exist)")
    parser.add_argument("--image-video-joint", action="store_true",
                        help="DAM's joint image + video checkpoint (the released server's --image_video_joint_checkpoint)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.dst, image_video_joint=args.image_video_joint)
    except RegionLibError as exc:
        print(f"convert: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"convert: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
