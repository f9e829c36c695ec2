"""What a worker lists: its languages (native ``GET /api/v1/languages``) and
Piston's runtimes, from the catalog and the images built on this host. The
worker service and the gateway's embedded worker answer with these."""

from __future__ import annotations

from typing import Any

from tvm.compat import piston
from tvm.config.catalog import Catalog, verified_keys
from tvm.pyrovm.images import ImageStore


def languages_table(catalog: Catalog, images: ImageStore) -> list[dict[str, Any]]:
    tested = verified_keys(catalog)
    out = []
    for lang in catalog:
        out.append(
            {
                "name": lang.name,
                "version": lang.version,
                "display_name": lang.display_name,
                "aliases": list(lang.aliases),
                "runtime": lang.runtime,
                "compiled": lang.compiled,
                "image": lang.image.name,
                "image_built": images.is_built(lang.image),
                "tested": lang.key in tested,  # its test program passed (offered by v2)
                "judge0_ids": list(lang.judge0_ids),
                "limits": {
                    stage: {"default": vars(spec.default), "max": vars(spec.maximum)}
                    for stage, spec in (("run", lang.run_limits), ("compile", lang.compile_limits))
                },
            }
        )
    return out


def runtimes_table(catalog: Catalog, images: ImageStore) -> list[dict[str, Any]]:
    """Piston's ``GET /api/v2/runtimes``: the tested entries whose image is built."""
    return piston.runtimes(catalog, {lang.key for lang in catalog if images.is_built(lang.image)})
