"""Datasets, file readers, a checked downloader, and batching.

    from featuremaps import data
    train = data.load("sample", "train")          # embedded, offline: 4,500 MNIST images (N, 28, 28, 1)
    val = data.load("sample", "val")              # 500, disjoint from train, 50 per digit
    test = data.load("mnist", "test", data_dir="../shared/data/mnist")
    x = data.normalize(train.images, dataset="mnist")    # float32, (x/255 - 0.1307) / 0.3081
    for xb, yb in data.batches(x, train.labels, 64, rng=np.random.default_rng(0)): ...

Lookup order and caching: `datasets.py`. Downloads: `download.py`. Epoch orders that survive a restart:
`batching.py`.
"""
from .batching import NORMALIZATION, Loader, batches, epoch_order, normalize, random_shift
from .cifar import CIFAR10_CLASSES, read_cifar_batch, write_cifar_batch
from .dataset import Dataset, split_validation
from .datasets import DATASETS, default_cache_dir, load
from .download import DownloadError, fetch, md5sum
from .idx import DataError, read_idx, write_idx

__all__ = [
    "Dataset", "load", "DATASETS", "default_cache_dir", "split_validation",
    "read_idx", "write_idx", "read_cifar_batch", "write_cifar_batch", "CIFAR10_CLASSES",
    "DataError", "DownloadError", "fetch", "md5sum",
    "NORMALIZATION", "normalize", "batches", "epoch_order", "random_shift", "Loader",
]
