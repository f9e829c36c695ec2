"""The image builder and ``tvm images`` without root, network or mmdebstrap."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from tvm.cli import main
from tvm.config.catalog import ImageRecipe, load_catalog
from tvm.config.settings import Settings
from tvm.errors import ConfigError, ImageBuildFailed, ImageError, ImageNotBuilt
from tvm.pyrovm.images import build, contents, customise, mirror
from tvm.pyrovm.images import store as image_store

MIRROR = "http://mirror.example/debian"

DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
"""

ONE_LINE = """\
# deb http://old.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] https://vendor.example/apt cloud-sdk main
deb http://security.example/debian-security bookworm-security main
deb-src http://src.example/debian bookworm main
deb http://mirror.example/debian/ bookworm main contrib
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TVM_HOME", str(tmp_path))
    monkeypatch.setenv("TVM_DEBIAN_MIRROR", MIRROR)
    return tmp_path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings()


def recipe(name: str = "tiny", packages: Sequence[str] = ("bash",), **kw: object) -> ImageRecipe:
    return ImageRecipe(name=name, suite="bookworm", packages=tuple(packages), **kw)  # type: ignore[arg-type]


def fake_rootfs(rootfs: Path) -> None:
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/tool").write_bytes(b"same bytes in every image\n" * 100)


class FakeBuilder(build.ImageBuilder):
    """mmdebstrap replaced by a few files; counts the bootstraps."""

    calls = 0
    fail_with: BaseException | None = None

    def _bootstrap(self, recipe: ImageRecipe, rootfs: Path, mirror: str, log: Path) -> None:
        type(self).calls += 1
        assert rootfs.parent.name.startswith(f".{recipe.name}-")
        assert ".partial-" in rootfs.parent.name
        fake_rootfs(rootfs)
        if self.fail_with is not None:
            raise self.fail_with


@pytest.fixture
def fake_builder() -> type[FakeBuilder]:
    FakeBuilder.calls = 0
    FakeBuilder.fail_with = None
    return FakeBuilder


# ----------------------------------------------------------------- recipes ----
def test_digest_is_stable_and_order_free() -> None:
    a = recipe(packages=("bash", "python3"))
    assert a.digest == recipe(packages=("python3", "bash")).digest
    assert len(a.digest) == 16
    assert a.digest != ImageRecipe("tiny", "trixie", ("bash", "python3")).digest
    assert a.digest != recipe(packages=("bash", "python3"), pip=("numpy",)).digest


def test_python3_is_always_included() -> None:
    assert build.image_packages(recipe(packages=("nodejs",))) == ["nodejs", "python3"]
    assert build.image_packages(recipe(packages=("python3-minimal",))) == ["python3-minimal"]
    assert "libstdc++6" in build.image_packages(recipe(packages=("python3",), pip=("numpy",)))


def test_mmdebstrap_command(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = build.mmdebstrap_argv(recipe(pip=("six",)), Path("/x/rootfs"), MIRROR, settings)
    assert "--variant=essential" in argv
    assert "--include=bash,python3,libstdc++6,libgcc-s1" in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert '--essential-hook=mkdir -p "$1"/usr/share/man/man1 ' in " ".join(argv)
    hook = next(a for a in argv if a.startswith("--customize-hook="))
    assert "tvm.pyrovm.images customize" in hook and "--pip six" in hook
    assert hook.endswith('"$1"') and "--uid-base 60000" in hook
    assert argv[-3:] == ["bookworm", "/x/rootfs", f"deb {MIRROR} bookworm main"]


# ------------------------------------------------------------------ mirror ----
def test_parse_deb822() -> None:
    sources = mirror.parse_deb822_sources(DEB822)
    assert [s.uri for s in sources] == [
        MIRROR,
        "http://mirror.example/debian-security",
        "https://vendor.example/node_20.x",
    ]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert mirror.pick_debian_mirror(sources) == MIRROR
    assert (
        mirror.parse_deb822_sources("Types: deb\nURIs: http://a.example/debian\nEnabled: no\n")
        == []
    )


def test_parse_one_line() -> None:
    sources = mirror.parse_one_line_sources(ONE_LINE)
    assert [s.uri for s in sources] == [
        "https://vendor.example/apt",
        "http://security.example/debian-security",
        "http://mirror.example/debian/",
    ]
    assert mirror.pick_debian_mirror(sources) == MIRROR


def test_mirror_from_host_apt_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVM_DEBIAN_MIRROR", raising=False)
    monkeypatch.setenv("TVM_HOME", str(tmp_path))
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/vendor.sources.disabled").write_text(
        "Types: deb\nURIs: http://wrong.example/debian\nSuites: bookworm\n"
    )
    (tmp_path / "sources.list.d/debian.sources").write_text(DEB822)
    assert mirror.debian_mirror(Settings(), tmp_path) == MIRROR
    assert mirror.debian_mirror(Settings(debian_mirror="http://x.example/d/"), tmp_path) == (
        "http://x.example/d"
    )
    (tmp_path / "sources.list.d/debian.sources").unlink()
    with pytest.raises(ConfigError, match="TVM_DEBIAN_MIRROR"):
        mirror.debian_mirror(Settings(), tmp_path)


# ------------------------------------------------------------------- store ----
def test_rootfs_of_unbuilt_image_says_how_to_build(settings: Settings) -> None:
    store = image_store.ImageStore(settings)
    with pytest.raises(ImageNotBuilt, match="tvm images build --image tiny"):
        store.rootfs(recipe())
    assert store.size_mb(recipe()) is None and not store.is_built(recipe())


def test_the_store_remembers_paths_never_whether_an_image_is_built(settings: Settings) -> None:
    """Each sandbox looks its image up: the paths are kept, the manifest is checked."""
    store = image_store.ImageStore(settings)
    assert not store.is_built(recipe())
    image = store.image_dir(recipe())
    (image / "rootfs").mkdir(parents=True)
    (image / "manifest.json").write_text("{}")
    assert store.is_built(recipe()) and store.rootfs(recipe()) == image / "rootfs"
    assert image == store.root / f"tiny-{recipe().digest}"
    (image / "manifest.json").unlink()  # removed (pruned) after a lookup
    with pytest.raises(ImageNotBuilt):
        store.rootfs(recipe())


def test_leftovers_are_cleaned(settings: Settings) -> None:
    store = image_store.ImageStore(settings)
    partial = store.root / f".tiny-{recipe().digest}.partial-12345"
    old = store.root / f".tiny-{recipe().digest}.old-99"
    for path in (partial / "rootfs/etc", old / "rootfs"):
        path.mkdir(parents=True)
    assert store.entries() == []
    assert store.leftovers() == sorted([partial, old])
    with store.lock():
        assert len(store.clean_leftovers()) == 2
    assert not partial.exists() and not old.exists()


def test_lock_is_exclusive(settings: Settings) -> None:
    store = image_store.ImageStore(settings)
    with store.lock(), pytest.raises(ImageError, match="another 'tvm images'"), store.lock():
        pass


def test_remove_tree_never_follows_a_symlinked_rootfs(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (target / "etc").mkdir(parents=True)
    image = tmp_path / "images/x-0123456789abcdef"
    image.mkdir(parents=True)
    (image / "rootfs").symlink_to(target)
    image_store.remove_tree(image)
    assert not image.exists() and (target / "etc").is_dir()


# ----------------------------------------------------------------- builder ----
def test_build_then_skip_then_force(settings: Settings, fake_builder: type[FakeBuilder]) -> None:
    store = image_store.ImageStore(settings)
    builder = fake_builder(settings, store)
    first = builder.build(recipe())
    assert first.built and fake_builder.calls == 1
    manifest = store.manifest(recipe())
    assert manifest is not None
    assert manifest["digest"] == recipe().digest and manifest["mirror"] == MIRROR
    assert manifest["recipe"]["packages"] == ["bash"]
    assert store.rootfs(recipe()).is_dir()

    again = builder.build(recipe())
    assert not again.built and fake_builder.calls == 1

    forced = builder.build(recipe(), force=True)
    assert forced.built and fake_builder.calls == 2
    assert store.is_built(recipe()) and store.leftovers() == []


def test_force_replaces_a_hand_made_image(
    settings: Settings, fake_builder: type[FakeBuilder], tmp_path: Path
) -> None:
    store = image_store.ImageStore(settings)
    elsewhere = tmp_path / "rootfs-by-hand"
    elsewhere.mkdir()
    final = store.image_dir(recipe())
    final.mkdir(parents=True)
    (final / "rootfs").symlink_to(elsewhere)
    (final / "manifest.json").write_text('{"size_mb": 192}')
    fake_builder(settings, store).build(recipe(), force=True)
    assert not (final / "rootfs").is_symlink() and (final / "rootfs/etc/passwd").is_file()
    assert elsewhere.is_dir() and store.leftovers() == []


@pytest.mark.parametrize("error", [ImageBuildFailed("boom"), KeyboardInterrupt()])
def test_failed_build_leaves_nothing(
    settings: Settings, fake_builder: type[FakeBuilder], error: BaseException
) -> None:
    store = image_store.ImageStore(settings)
    fake_builder.fail_with = error
    with pytest.raises(type(error)):
        fake_builder(settings, store).build(recipe())
    assert not store.is_built(recipe())
    assert not store.image_dir(recipe()).exists() and store.leftovers() == []


def test_one_failure_does_not_stop_the_others(
    settings: Settings, fake_builder: type[FakeBuilder]
) -> None:
    class Picky(fake_builder):  # type: ignore[valid-type,misc]
        def _bootstrap(self, recipe: ImageRecipe, rootfs: Path, mirror: str, log: Path) -> None:
            if recipe.name == "bad":
                raise ImageBuildFailed("image 'bad' failed")
            super()._bootstrap(recipe, rootfs, mirror, log)

    store = image_store.ImageStore(settings)
    with pytest.raises(ImageBuildFailed, match="image 'bad' failed"):
        Picky(settings, store).build_many([recipe("bad"), recipe("good")])
    assert store.is_built(recipe("good")) and not store.is_built(recipe("bad"))


def test_images_build_side_by_side(
    settings: Settings, fake_builder: type[FakeBuilder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``image_build_jobs`` bootstraps run at once: each waits here for the other."""
    monkeypatch.setenv("TVM_IMAGE_BUILD_JOBS", "2")
    both = threading.Barrier(2, timeout=10)

    class Paired(fake_builder):  # type: ignore[valid-type,misc]
        def _bootstrap(self, recipe: ImageRecipe, rootfs: Path, mirror: str, log: Path) -> None:
            both.wait()
            super()._bootstrap(recipe, rootfs, mirror, log)

    store = image_store.ImageStore(settings)
    results = Paired(Settings(), store).build_many([recipe("one"), recipe("two")])
    assert [r.recipe.name for r in results] == ["one", "two"]
    assert all(r.built for r in results) and Paired.calls == 2


def test_an_interrupt_starts_no_further_build(
    settings: Settings, fake_builder: type[FakeBuilder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TVM_IMAGE_BUILD_JOBS", "1")
    fake_builder.fail_with = KeyboardInterrupt()
    store = image_store.ImageStore(settings)
    with pytest.raises(KeyboardInterrupt):
        fake_builder(Settings(), store).build_many([recipe("one"), recipe("two"), recipe("three")])
    assert fake_builder.calls == 1 and store.leftovers() == []


def test_identical_files_are_shared(settings: Settings, fake_builder: type[FakeBuilder]) -> None:
    store = image_store.ImageStore(settings)
    fake_builder(settings, store).build_many([recipe("one"), recipe("two")])
    one = store.rootfs(recipe("one")) / "usr/bin/tool"
    two = store.rootfs(recipe("two")) / "usr/bin/tool"
    assert one.stat().st_ino == two.stat().st_ino


def test_python_hardlink_fallback(tmp_path: Path) -> None:
    for top in ("a", "b"):
        (tmp_path / top).mkdir()
        (tmp_path / top / "big").write_bytes(b"x" * 100_000)
        (tmp_path / top / "own").write_text(top)
    before = image_store.disk_usage_mb([tmp_path / "a", tmp_path / "b"])
    assert build._hardlink_python([tmp_path / "a", tmp_path / "b"]) == 1
    assert os.path.samefile(tmp_path / "a/big", tmp_path / "b/big")
    assert not os.path.samefile(tmp_path / "a/own", tmp_path / "b/own")
    assert image_store.disk_usage_mb([tmp_path / "a", tmp_path / "b"]) <= before


def test_stream_has_no_stdin_and_logs_every_line() -> None:
    log = io.StringIO()
    seen: list[str] = []
    code = build._stream(["sh", "-c", "cat; echo I: one; echo two; exit 3"], dict(os.environ),
                      log, seen.append)  # fmt: skip
    assert code == 3 and seen == ["I: one\n", "two\n"] and log.getvalue() == "I: one\ntwo\n"


def test_failure_names_the_log_and_next_step(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = "; ".join(f"echo line{i}" for i in range(40))
    monkeypatch.setattr(build, "mmdebstrap_argv", lambda *a: ["sh", "-c", f"{lines}; exit 2"])
    monkeypatch.setattr(build.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ImageBuildFailed) as info:
        build.ImageBuilder(settings).build(recipe())
    message = info.value.message
    log = settings.logs_dir / f"image-tiny-{recipe().digest}.log"
    assert "exited 2" in message and str(log) in message
    assert "line39" in message and "line9\n" not in message
    assert "tvm images build --image tiny" in message


def test_missing_mmdebstrap_says_how_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(ImageBuildFailed, match="apt-get install mmdebstrap"):
        build.ImageBuilder(settings).build(recipe())


# -------------------------------------------------------- customize hook ----
def test_customize_hook(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    fake_rootfs(rootfs)
    (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\nnobody:x:60001:1::/:/x\n")
    for rel in ("usr/share/doc/bash/copyright", "usr/share/doc/bash/README",
                "usr/share/man/man1/ls.1.gz", "usr/share/locale/de/LC_MESSAGES/x.mo",
                "usr/share/locale/locale.alias"):  # fmt: skip
        (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / rel).write_text("x")
    assert (
        customise.main(["customize", str(rootfs), "--uid-base", "60000", "--uid-count", "3"]) == 0
    )
    passwd = (rootfs / "etc/passwd").read_text()
    assert "runner60000:x:60000:60000:tvm sandbox:/tmp:/usr/sbin/nologin" in passwd
    assert "runner60001" not in passwd and "runner60002" in passwd
    assert "runner60002:x:60002:" in (rootfs / "etc/group").read_text()
    assert (rootfs / "work").is_dir() and (rootfs / ".tvm/tvm_agent").is_dir()
    assert (rootfs / "usr/share/doc/bash/copyright").exists()
    assert not (rootfs / "usr/share/doc/bash/README").exists()
    assert not (rootfs / "usr/share/man/man1").exists()
    assert sorted(p.name for p in (rootfs / "usr/share/locale").iterdir()) == ["locale.alias"]
    assert customise.add_sandbox_users(rootfs, 60000, 3) == 0  # idempotent


def test_python_version_and_wheel_tags(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    assert contents.python_version(tmp_path) is None
    (tmp_path / "usr/bin/python3").symlink_to("python3.13")
    assert contents.python_version(tmp_path) == "3.13"
    tags = customise.pip_platforms((2, 36), "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    info = tmp_path / "usr/local/lib/python3.13/dist-packages/six-1.17.0.dist-info"
    info.mkdir(parents=True)
    assert contents.pip_packages(tmp_path) == {"six": "1.17.0"}


# --------------------------------------------------------------------- CLI ----
@pytest.fixture
def built_recipes(monkeypatch: pytest.MonkeyPatch) -> list[ImageRecipe]:
    """Records what ``tvm images build`` asked to build, building nothing."""
    asked: list[ImageRecipe] = []

    def build_many(
        self: build.ImageBuilder, recipes: Sequence[ImageRecipe], force: bool = False
    ) -> list[build.BuildResult]:
        asked.extend(recipes)
        return [build.BuildResult(r, False, 1.0, 10, self.store.image_dir(r)) for r in recipes]

    monkeypatch.setattr(build.ImageBuilder, "build_many", build_many)
    return asked


def test_cli_build_selects_images(home: Path, built_recipes: list[ImageRecipe]) -> None:
    catalog = load_catalog()
    runner = CliRunner()
    result = runner.invoke(main, ["images", "build"])
    assert result.exit_code == 0, result.output
    used = {lang.image.name for lang in catalog}
    assert {r.name for r in built_recipes} == used
    built_recipes.clear()
    result = runner.invoke(main, ["images", "build", "python@3.13", "--image", "bookworm-gcc"])
    assert result.exit_code == 0, result.output
    assert [r.name for r in built_recipes] == ["bookworm-gcc", "trixie-python"]
    assert "up to date" in result.output


def test_cli_build_rejects_unknown_names(home: Path, built_recipes: list[ImageRecipe]) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["images", "build", "--image", "nope"])
    assert result.exit_code == 2 and "unknown image 'nope'" in result.output
    result = runner.invoke(main, ["images", "build", "no-such-language"])
    assert result.exit_code == 1 and "not supported" in result.output
    assert built_recipes == []


def test_cli_list_rm_prune(home: Path, fake_builder: type[FakeBuilder]) -> None:
    settings = Settings()
    store = image_store.ImageStore(settings)
    catalog = load_catalog()
    base = catalog.images["bookworm-base"]
    fake_builder(settings, store).build(base)
    stale = store.root / "bookworm-base-0000000000000000"
    (stale / "rootfs").mkdir(parents=True)
    (stale / "manifest.json").write_text(json.dumps({"suite": "bookworm", "size_mb": 1}))
    runner = CliRunner()

    listing = runner.invoke(main, ["images", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    assert base.digest in listing.output and "stale" in listing.output
    assert "python@3.11.2" in listing.output and "disk use:" in listing.output

    pruned = runner.invoke(main, ["images", "prune"])
    assert pruned.exit_code == 0 and not stale.exists() and store.is_built(base)

    assert runner.invoke(main, ["images", "rm"]).exit_code == 2
    removed = runner.invoke(main, ["images", "rm", "bookworm-base"])
    assert removed.exit_code == 0, removed.output
    assert not store.image_dir(base).exists()
    assert "nothing to remove" in runner.invoke(main, ["images", "rm", "--all"]).output


def test_images_is_a_group_others_can_extend() -> None:
    import click

    from tvm.cli.images import COMMANDS, images

    assert [images] == COMMANDS and isinstance(images, click.Group) and images.name == "images"
    assert {"build", "list", "rm", "prune"} <= set(images.commands)


def test_hook_runs_as_a_module() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "tvm.pyrovm.images", "--help"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0 and "customize" in proc.stdout


def test_a_busy_store_is_refused_or_waited_for(settings: Settings) -> None:
    import threading

    first, second = image_store.ImageStore(settings), image_store.ImageStore(settings)
    told: list[str] = []
    got = threading.Event()

    def waiter() -> None:
        with second.lock(wait=told.append):
            got.set()

    with first.lock():
        with pytest.raises(ImageError, match="another 'tvm images' command"), second.lock():
            pass
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(0.3)  # waits while the first holds the store
    thread.join(5)
    assert got.is_set() and told and "waiting for it to finish" in told[0]
