"""Language images: root filesystems built from Debian packages, cached by recipe hash.

* :mod:`.store` — the images on disk; all the runtime needs (re-exported here);
* :mod:`.build` — :class:`~.build.ImageBuilder`: mmdebstrap, manifest, disk sharing;
* :mod:`.mirror` — which Debian mirror a build uses;
* :mod:`.customise` — the mmdebstrap hook that finishes an image (another process).
"""

from tvm.pyrovm.images.store import ImageEntry, ImageStore, disk_usage_mb, remove_tree

__all__ = ["ImageEntry", "ImageStore", "disk_usage_mb", "remove_tree"]
