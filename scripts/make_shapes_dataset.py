"""Write the synthetic shapes dataset (Pascal VOC layout) that training, evaluation and the
service tests use.

Examples:
    python scripts/make_shapes_dataset.py --out data/shapes --train 4000 --test 500 --seed 0
    python scripts/make_shapes_dataset.py --out /tmp/tiny --train 8 --test 4 --height 96 --width 160

The result loads with `ssd_core.data.load_dataset("voc:data/shapes", "train")`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ssd_core.data.shapes import write_shapes_dataset

logger = logging.getLogger("make_shapes_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--train", type=int, default=1000, help="number of training images")
    parser.add_argument("--test", type=int, default=200, help="number of test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=300, help="image height in pixels")
    parser.add_argument("--width", type=int, default=480, help="image width in pixels")
    parser.add_argument("--max-objects", type=int, default=6)
    parser.add_argument("--jpeg-quality", type=int, default=95)
    return parser


def main(args: argparse.Namespace) -> int:
    logger.info("configuration: %s", vars(args))
    root = write_shapes_dataset(
        args.out,
        num_train=args.train,
        num_test=args.test,
        seed=args.seed,
        height=args.height,
        width=args.width,
        max_objects=args.max_objects,
        jpeg_quality=args.jpeg_quality,
    )
    logger.info("wrote %d train and %d test images to %s", args.train, args.test, root)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
