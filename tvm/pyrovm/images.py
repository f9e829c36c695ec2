"""Language images: root filesystems built from Debian packages, cached by recipe hash.

Layout under the data dir::

    $TVM_HOME/images/<image name>-<recipe digest>/rootfs/        the root filesystem
    $TVM_HOME/images/<image name>-<recipe digest>/manifest.json  packages, size, build time
"""

from __future__ import annotations

from pathlib import Path

from tvm.config.catalog import ImageRecipe
from tvm.config.settings import Settings
from tvm.errors import ImageNotBuilt


class ImageStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.images_dir

    def image_dir(self, recipe: ImageRecipe) -> Path:
        return self.root / f"{recipe.name}-{recipe.digest}"

    def rootfs(self, recipe: ImageRecipe) -> Path:
        """The built root filesystem of ``recipe``; ImageNotBuilt says how to build it."""
        path = self.image_dir(recipe) / "rootfs"
        if not (self.image_dir(recipe) / "manifest.json").is_file():
            raise ImageNotBuilt(
                f"image '{recipe.name}' is not built; run: tvm images build --image {recipe.name}"
            )
        return path

    def is_built(self, recipe: ImageRecipe) -> bool:
        return (self.image_dir(recipe) / "manifest.json").is_file()

    def size_mb(self, recipe: ImageRecipe) -> int | None:
        import json

        try:
            manifest = json.loads((self.image_dir(recipe) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return int(manifest.get("size_mb", 0))
