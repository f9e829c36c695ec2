from __future__ import annotations

from pathlib import Path

import pytest

from tvm.config.settings import Settings
from tvm.errors import ConfigError


def test_precedence_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = 9001\nmax_concurrent_vms = 3\npool_size = 2\n")
    monkeypatch.setenv("TVM_CONFIG", str(config))
    monkeypatch.setenv("TVM_MAX_CONCURRENT_VMS", "5")
    s = Settings(pool_size=7)
    assert s.port == 9001  # file over default
    assert s.max_concurrent_vms == 5  # env over file
    assert s.pool_size == 7  # flag over everything
    assert s.max_concurrent_requests == 20  # the seed's default
    assert s.max_vm_lifetime_seconds == 60


def test_config_file_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVM_CONFIG", raising=False)
    monkeypatch.setenv("TVM_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text('driver = "gvisor"\n')
    s = Settings()
    assert s.home == tmp_path and s.driver == "gvisor"
    assert s.images_dir == tmp_path / "images"


def test_bad_values_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVM_CONFIG", str(tmp_path / "c.toml"))
    (tmp_path / "c.toml").write_text("port = [")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings()
    (tmp_path / "c.toml").write_text("")
    monkeypatch.setenv("TVM_DRIVER", "docker")
    with pytest.raises(ValueError, match="driver"):
        Settings()
