import os
import socket

import pytest


@pytest.fixture
def free_port():
    """A function returning a free TCP port on 127.0.0.1."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture(scope="package")
def local_ray():
    """One local Ray instance (127.0.0.1, 2 CPUs) shared by the in-process job tests."""
    import ray

    from regionlib.distributed import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    """Five scikit-image photographs written as PNG files (downscaled to 96 px)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("images")
    for name in ["astronaut", "chelsea", "coffee", "rocket", "camera"]:
        img = Image.fromarray(getattr(data, name)())
        img.thumbnail((96, 96))
        img.save(root / f"{name}.png")
    return root
