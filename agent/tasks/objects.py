"""Object images for the Harlow task: the set, and its split into a training and a test pool.

The default set is scikit-learn's bundled digits (1,797 grey 8x8 images in 10 classes): real
images that install with a package, so nothing is downloaded at run time. A folder of the
user's own PNG/JPEG images works too (the Brady, Konkle & Oliva objects, for instance): every
file is one object, converted to grey and resized to the encoder's 8x8 input; a file's class is
its subfolder, or the file itself when the folder is flat (then every object is its own class).

Pools are disjoint. `holdout="images"` (default) splits the images of every class, so no test
image is ever seen in training; `holdout="classes"` holds out whole classes, a stricter probe
of whether the agent learned to compare images rather than to know digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SIDE = 8
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
DEFAULT_SOURCE = "digits"
HOLDOUTS = ("images", "classes")
TEST_FRACTION = 0.3  # (ours) of the images, or of the classes, held out for test
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ObjectSet:
    source: str
    images: np.ndarray  # (N, 64) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64 class of each object

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def load_objects(source: str = DEFAULT_SOURCE) -> ObjectSet:
    """`digits`, or a directory of PNG/JPEG images (raises ValueError naming --objects)."""
    if source == DEFAULT_SOURCE:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images.reshape(len(digits.images), IMAGE_SIZE).astype(np.float32) / 16.0
        return ObjectSet(source, images, digits.target.astype(np.int64))
    return _load_folder(Path(source))


def check_source(source: str) -> None:
    """Raise ValueError naming --objects unless source is `digits` or an existing directory."""
    if source != DEFAULT_SOURCE and not Path(source).is_dir():
        raise ValueError(f"--objects: expected 'digits' or a directory of PNG/JPEG images, got {source!r}")


def _load_folder(folder: Path) -> ObjectSet:
    check_source(str(folder))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 4:
        raise ValueError(f"--objects {folder}: found {len(files)} PNG/JPEG images, need at least 4 "
                         "(two per pool)")
    from PIL import Image

    images = np.stack([_to_grey_square(Image.open(p)) for p in files])
    class_names = [str(p.parent.relative_to(folder)) for p in files]
    if len(set(class_names)) == 1:  # flat folder: every image its own class
        class_names = [str(p) for p in files]
    index = {name: i for i, name in enumerate(sorted(set(class_names)))}
    labels = np.array([index[name] for name in class_names], dtype=np.int64)
    return ObjectSet(str(folder), images, labels)


def _to_grey_square(image) -> np.ndarray:
    from PIL import Image

    grey = image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float32).reshape(IMAGE_SIZE) / 255.0


def split_pools(objects: ObjectSet, holdout: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids): disjoint, sorted, each with objects of at least two classes."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"--holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    rng = np.random.default_rng(seed)
    if holdout == "classes":
        classes = rng.permutation(objects.num_classes)
        held = max(2, round(TEST_FRACTION * len(classes)))
        if len(classes) - held < 2:
            raise ValueError(f"--holdout classes: the object set has {len(classes)} classes; need at least 4")
        test_mask = np.isin(objects.labels, classes[:held])
    else:
        test_mask = np.zeros(len(objects.labels), dtype=bool)
        for label in np.unique(objects.labels):
            members = np.flatnonzero(objects.labels == label)
            if len(members) == 1:  # a single-image class goes to one pool, alternating by draw
                test_mask[members] = rng.random() < TEST_FRACTION
                continue
            held = rng.permutation(members)[: max(1, round(TEST_FRACTION * len(members)))]
            test_mask[held] = True
    train, test = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    for name, ids in (("training", train), ("test", test)):
        if len(np.unique(objects.labels[ids])) < 2:
            raise ValueError(f"--objects {objects.source}: the {name} pool has fewer than two classes; "
                             "add images or classes")
    return train, test


def pool_tensors(objects: ObjectSet, ids: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (P, 64), labels (P,), object ids (P,)) of one pool on the device."""
    return (torch.as_tensor(objects.images[ids], device=device),
            torch.as_tensor(objects.labels[ids], device=device),
            torch.as_tensor(ids, device=device))
