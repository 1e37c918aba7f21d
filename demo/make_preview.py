"""Writes docs/demo.webp, the README's animated preview, from the demo video (``make preview``).

The first ``--seconds`` of out/demo.webp, each frame scaled ×``--scale`` (nearest neighbour: the model works at
64×64), as a looping animated WebP at the video's frame rate.
"""
import argparse
import sys

from PIL import Image, ImageSequence


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video", default="out/demo.webp")
    ap.add_argument("--out", default="docs/demo.webp")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--scale", type=int, default=3)
    a = ap.parse_args(argv)
    src = Image.open(a.video)
    duration = src.info.get("duration", 125)  # ms per frame
    n = int(a.seconds * 1000 / duration)
    frames = [f.convert("RGB").resize((f.width * a.scale, f.height * a.scale), Image.NEAREST)
              for _, f in zip(range(n), ImageSequence.Iterator(src))]
    frames[0].save(a.out, save_all=True, append_images=frames[1:], duration=duration, loop=0, quality=80, method=4)
    print(f"wrote {a.out}: {len(frames)} frames of {frames[0].width}×{frames[0].height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
