"""Object images for the Harlow task: the set, and its split into a training and a test pool.

The default set is scikit-learn's bundled digits (1,797 grey 8x8 images in 10 classes): real
images that install with a package, so nothing is downloaded at run time. A folder of the
user's own PNG/JPEG images works too (the Brady, Konkle & Oliva objects, for instance): every
file is one object, converted to grey and resized to the encoder's 8x8 input; a file's class is
its subfolder, or the file itself when the folder is flat (then every object is its own class).

`procedural` makes the objects: grey 8x8 images each composed of random shapes, strokes and
textures (`procedural_images`), the training pool drawn from one seed stream and the test pool
from another, so no test object was ever shown in training, by construction rather than by
splitting a fixed set; every object is its own class, and the split ignores `holdout`.

Pools are disjoint. `holdout="images"` (default) splits the images of every class, so no test
image is ever seen in training; `holdout="classes"` holds out whole classes, a stricter probe
of whether the agent learned to compare images rather than to know digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

IMAGE_SIDE = 8
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
DEFAULT_SOURCE = "digits"
PROCEDURAL = "procedural"
SOURCES = (DEFAULT_SOURCE, PROCEDURAL)  # besides a directory of images
HOLDOUTS = ("images", "classes")
# procedural: how many objects each stream makes, and the streams' seeds (distinct spawn keys of
# one SeedSequence: independent streams). (ours) 240k training objects: a 300k-episode run
# meets each about 2.5 times; 60k test objects.
PROCEDURAL_TRAIN, PROCEDURAL_TEST = 240_000, 60_000
PROCEDURAL_ENTROPY = 20180514  # the 2018 paper's publication date
TRAIN_STREAM, TEST_STREAM = 0, 1
TEST_FRACTION = 0.3  # (ours) of the images, or of the classes, held out for test
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ObjectSet:
    source: str
    images: np.ndarray  # (N, 64) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64 class of each object
    # Objects made for one pool only (procedural): True where the object belongs to the test pool;
    # None: split_pools splits the set.
    test_stream: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def load_objects(source: str = DEFAULT_SOURCE) -> ObjectSet:
    """`digits`, `procedural`, or a directory of PNG/JPEG images (raises ValueError naming --objects)."""
    if source == DEFAULT_SOURCE:
        return _digits()
    if source == PROCEDURAL:
        return _procedural()
    return _load_folder(Path(source))


@lru_cache(maxsize=1)
def _digits() -> ObjectSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.reshape(len(digits.images), IMAGE_SIZE).astype(np.float32) / 16.0
    return ObjectSet(DEFAULT_SOURCE, images, digits.target.astype(np.int64))


@lru_cache(maxsize=1)
def _procedural() -> ObjectSet:
    train = _cached(PROCEDURAL_TRAIN, TRAIN_STREAM)
    test = _cached(PROCEDURAL_TEST, TEST_STREAM)
    # Independent continuous draws essentially never coincide; drop any test object that equals a
    # training one anyway, so that "never shown in training" holds exactly.
    seen = {row.tobytes() for row in train}
    test = test[[row.tobytes() not in seen for row in test]]
    images = np.concatenate([train, test])
    test_stream = np.r_[np.zeros(len(train), dtype=bool), np.ones(len(test), dtype=bool)]
    return ObjectSet(PROCEDURAL, images, np.arange(len(images), dtype=np.int64), test_stream)


def _cached(count: int, stream: int) -> np.ndarray:
    """procedural_images, kept in a cache folder after the first call (making 300k objects takes
    10-40 s on one core; reading them back, well under one): $FASTRNN_CACHE, else ~/.cache/fastrnn."""
    import os

    folder = Path(os.environ.get("FASTRNN_CACHE", Path.home() / ".cache" / "fastrnn"))
    path = folder / f"procedural-v{PROCEDURAL_VERSION}-{PROCEDURAL_ENTROPY}-{stream}-{count}.npy"
    try:
        images = np.load(path)
        if images.shape == (count, IMAGE_SIZE) and images.dtype == np.float32:
            return images
    except (OSError, ValueError):
        pass
    images = procedural_images(count, stream)
    try:  # written whole, then renamed: a reader never sees half a file
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as file:
            np.save(file, images)
        os.replace(partial, path)
    except OSError:  # an unwritable cache only costs the time to make them again
        pass
    return images


def procedural_images(count: int, stream: int, entropy: int = PROCEDURAL_ENTROPY) -> np.ndarray:
    """(count, 64) float32 in [0, 1], distinct rows: grey 8x8 objects from seed stream `stream`.

    Each object: a background grey, then 2-4 parts painted over it in random grey levels, each a
    filled rectangle, a filled ellipse, a stroke (a thick line segment) or a texture (a sine
    grating of random orientation, frequency and phase inside a random rectangle). Objects with
    too little contrast (pixel std < 0.12) and repeats are dropped. Deterministic in (stream,
    entropy), drawn in fixed batches: a shorter count gives a prefix of a longer one."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))
    batches, kept = [], 0
    while kept < count:
        batch = _draw_objects(rng, PROCEDURAL_BATCH)
        batches.append(batch[batch.std(axis=1) >= 0.12])
        kept += len(batches[-1])
    images = np.concatenate(batches)
    rows = np.ascontiguousarray(images).view(np.dtype((np.void, images.shape[1] * images.itemsize))).ravel()
    _, first = np.unique(rows, return_index=True)
    return images[np.sort(first)[:count]]  # (a repeat, never seen so far, would leave count - 1 rows)


PROCEDURAL_BATCH = 8192
PROCEDURAL_VERSION = 1  # bump when the generator changes: the cache files carry it in their name


def _draw_objects(rng: np.random.Generator, n: int) -> np.ndarray:
    side, f = IMAGE_SIDE, np.float32

    def uniform(low, high, *shape):
        return rng.uniform(low, high, (*shape, n, 1, 1)).astype(f)

    yy, xx = np.meshgrid(np.arange(side, dtype=f) + 0.5, np.arange(side, dtype=f) + 0.5, indexing="ij")
    image = np.broadcast_to(uniform(0.0, 0.4), (n, side, side)).copy()  # background grey
    parts = rng.integers(2, 5, (n, 1, 1))
    for k in range(4):
        kind = rng.integers(0, 4, (n, 1, 1))
        level = uniform(0.0, 1.0)
        y0, y1 = np.sort(uniform(0, side, 2), axis=0)  # rectangle (and texture window): two corners
        x0, x1 = np.sort(uniform(0, side, 2), axis=0)
        y1, x1 = np.maximum(y1, y0 + 2), np.maximum(x1, x0 + 2)
        rect = (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)
        cy, cx = uniform(1, side - 1, 2)  # ellipse: centre and radii
        ry, rx = uniform(1.2, 4.0, 2)
        ellipse = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        ay, ax, by, bx = uniform(0, side, 4)  # stroke: a segment and its half-width
        width = uniform(0.5, 1.2)
        dy, dx = by - ay, bx - ax
        t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / np.maximum(dy * dy + dx * dx, f(1e-6)), 0, 1)
        stroke = (yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2 <= width * width
        angle, freq, phase = uniform(0, np.pi), uniform(0.5, 1.6), uniform(0, 2 * np.pi)  # texture: a grating
        wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        mask = np.where(kind == 1, ellipse, np.where(kind == 2, stroke, rect)) & (parts > k)
        value = np.where((kind == 3) & (wave <= 0), 1 - level, level)
        image = np.where(mask, value, image)
    return image.reshape(n, IMAGE_SIZE)


def check_source(source: str) -> None:
    """Raise ValueError naming --objects unless source is `digits`, `procedural` or an existing directory."""
    if source not in SOURCES and not Path(source).is_dir():
        raise ValueError(f"--objects: expected 'digits', 'procedural' or a directory of PNG/JPEG images, "
                         f"got {source!r}")


def _load_folder(folder: Path) -> ObjectSet:
    check_source(str(folder))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 4:
        raise ValueError(f"--objects {folder}: found {len(files)} PNG/JPEG images, need at least 4 "
                         "(two per pool)")
    from PIL import Image

    opened, sizes = [], {}
    for p in files:
        try:
            with Image.open(p) as image:
                image.load()
                opened.append(image.copy())
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            raise ValueError(f"--objects {folder}: cannot read {p.relative_to(folder)} as an image "
                             f"({type(error).__name__})") from None
        sizes.setdefault(opened[-1].size, p.relative_to(folder))
    if len(sizes) > 1:
        (size_a, file_a), (size_b, file_b) = list(sizes.items())[:2]
        raise ValueError(f"--objects {folder}: images of mixed sizes ({file_a} is {size_a[0]}x{size_a[1]}, "
                         f"{file_b} is {size_b[0]}x{size_b[1]}); give images of one size")
    images = np.stack([_to_grey_square(image) for image in opened])
    class_names = [str(p.parent.relative_to(folder)) for p in files]
    if all(p.parent == folder for p in files):  # flat folder: every image its own class
        class_names = [str(p) for p in files]
    index = {name: i for i, name in enumerate(sorted(set(class_names)))}
    labels = np.array([index[name] for name in class_names], dtype=np.int64)
    return ObjectSet(str(folder), images, labels)


def _to_grey_square(image) -> np.ndarray:
    from PIL import Image

    grey = image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float32).reshape(IMAGE_SIZE) / 255.0


def split_pools(objects: ObjectSet, holdout: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids): disjoint, sorted, each with objects of at least two classes.
    A procedural set's pools are its two streams, whatever the holdout."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"--holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if objects.test_stream is not None:
        return np.flatnonzero(~objects.test_stream), np.flatnonzero(objects.test_stream)
    if objects.num_classes < 2 and holdout == "images":
        raise ValueError(f"--objects {objects.source}: the images form {objects.num_classes} class (one "
                         "subfolder); need at least two classes, or a flat folder (every image its own class)")
    rng = np.random.default_rng(seed)
    if holdout == "classes":
        classes = rng.permutation(objects.num_classes)
        held = max(2, round(TEST_FRACTION * len(classes)))
        if len(classes) - held < 2:
            raise ValueError(f"--holdout classes: --objects {objects.source} has {len(classes)} "
                             f"class{'es' if len(classes) != 1 else ''} (subfolders); need at least 4")
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
