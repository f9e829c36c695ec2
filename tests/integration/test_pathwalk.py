"""The built images keep, for each ``warm_paths`` language, the paths its
sample program looked up at build time: the image's own toolchain paths, found
or not, and nothing of the host or of the scratch dirs a sandbox gets fresh.
Then php still runs through the service, whose warm pools walk them."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import require_languages
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.pathwalk import SKIPPED

pytestmark = [pytest.mark.namespace]

# A path each list must have: the toolchain's own files, found by its lookups.
EXPECTED = {
    "php@8.2.32": ("/usr/bin/php", "/etc/php/8.2/cli/php.ini"),
    "php@8.4.27": ("/usr/bin/php", "/etc/php/8.4/cli/php.ini"),
    "go@1.19.8": ("/usr/bin/go", "/usr/lib/go-1.19/src/fmt"),
    "go@1.24.4": ("/usr/bin/go", "/usr/lib/go-1.24/src/fmt"),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_the_image_lists_the_paths_of_our_sample(settings: Settings, key: str) -> None:
    (lang,) = require_languages(settings, key)
    assert lang.walk_list is not None
    rootfs = ImageStore(settings).rootfs(lang.image)
    listed = (rootfs / lang.walk_list.lstrip("/")).read_text().splitlines()
    assert len(listed) >= 50
    assert set(EXPECTED[key]) <= set(listed)
    assert all(path.startswith("/") for path in listed)
    assert not [p for p in listed if any(p == t or p.startswith(f"{t}/") for t in SKIPPED)]
    host = str(settings.home)
    assert not [p for p in listed if p.startswith(host)]  # the build's chroot dir is the host's
    missing = [p for p in listed if not (rootfs / p.lstrip("/")).exists()]
    assert missing  # searched for and not there: looked up ahead all the same
    assert len(missing) < len(listed)


def test_php_still_runs_from_warm_pools(settings: Settings, api: httpx.Client) -> None:
    (lang,) = require_languages(settings, "php@8.2.32")
    code = "<?php $n = array_sum(array_map('intval', explode(' ', trim(fgets(STDIN))))); echo $n;"
    for _ in range(3):  # the first may come cold; the pool's next ones walked
        body = {"language": "php", "version": lang.version, "stdin": "1 2 39\n",
                "files": [{"content": code}]}  # fmt: skip
        reply = api.post("/api/v2/execute", json=body).json()
        assert reply["run"]["stdout"] == "42" and reply["run"]["code"] == 0, reply
