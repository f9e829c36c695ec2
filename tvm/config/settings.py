"""Settings: built once, with one documented precedence.

    command-line flag  >  TVM_* environment variable  >  config file  >  default

The config file is TOML, read from ``$TVM_CONFIG`` or ``$TVM_HOME/config.toml``.
Every field below is also ``TVM_<FIELD>`` in the environment (upper case).
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tvm.errors import ConfigError
from tvm.pyrovm.drivers import AUTO, DRIVERS


def _known_driver(name: str) -> str:
    if name != AUTO and name not in DRIVERS:
        raise ValueError(f"unknown driver {name!r}; choose one of: {AUTO}, {', '.join(DRIVERS)}")
    return name


# The names the driver registry knows, and ``auto``.
DriverName = Annotated[str, AfterValidator(_known_driver)]


def default_home() -> Path:
    """``/var/lib/tvm`` as root, ``~/.local/share/tvm`` otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/tvm")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "tvm"


def default_pool_memory_mb() -> int:
    """A quarter of the host's memory, at most 1536 MB (every pre-started
    compiler warm at once, about 1.1 GB, with room for the other pools), at
    least 256 MB."""
    try:
        total_kb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    except (ValueError, OSError):
        return 512
    return max(256, min(1536, total_kb // 1024 // 4))


def _config_file() -> Path:
    explicit = os.environ.get("TVM_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("TVM_HOME")
    return (Path(home) if home else default_home()) / "config.toml"


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the config file; lower precedence than the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file()
        if not path.is_file():
            return {}
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every tunable of TVM, in one place."""

    model_config = SettingsConfigDict(env_prefix="TVM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="data dir: images, db, logs")
    host: str = Field("127.0.0.1", description="address the service listens on")
    port: int = Field(8000, ge=1, le=65535, description="port the service listens on")
    driver: DriverName = Field("auto", description="isolation driver; auto = strongest usable")
    log_level: str = Field("info", description="debug, info, warning, error")
    log_json: bool = Field(True, description="JSON log lines (else plain text)")

    # The worker's capacity and lifetime limits (MAX_CONCURRENT_VMS etc. in the design).
    max_concurrent_vms: int = Field(10, ge=1, le=1000, description="sandboxes at once")
    max_concurrent_requests: int = Field(
        20, ge=1, le=10000, description="executions admitted at once; beyond: 429"
    )
    max_vm_lifetime_seconds: int = Field(60, ge=1, le=3600, description="reaper kills older")

    # Warm pools (sandboxes created ahead of time per language, sized by demand).
    pool_size: int = Field(
        1, ge=0, le=100, description="warm sandboxes kept for each recently used language"
    )
    pool_max: int = Field(4, ge=0, le=100, description="most warm sandboxes for one language")
    pool_languages: list[str] = Field(
        default_factory=lambda: ["python", "javascript", "c", "c++", "bash"],
        description="languages kept warm from start-up, used or not",
    )
    pool_memory_mb: int = Field(
        default_factory=default_pool_memory_mb,
        ge=0,
        description="memory budget of all warm sandboxes together (default: a quarter of the "
        "host's memory, 256 to 1536 MB)",
    )
    pool_sandbox_mb: int = Field(
        12, ge=1, description="memory one idle warm sandbox takes (measured: about 8)"
    )
    pool_idle_seconds: float = Field(
        300, gt=0, description="a language unused this long keeps no warm sandbox"
    )

    # Live sandboxes (created with a lifetime, then many calls: docs/live-sandboxes.md).
    live_max_sandboxes: int = Field(
        10, ge=0, le=1000, description="live sandboxes at once on one worker; beyond: 429"
    )
    live_memory_budget_mb: int = Field(
        4096, ge=0, description="memory of all live sandboxes of a worker together; beyond: 429"
    )
    live_memory_mb: int = Field(
        512, ge=16, le=65536, description="a live sandbox's memory unless it asks for other"
    )
    live_max_memory_mb: int = Field(2048, ge=16, le=65536, description="most one may ask for")
    live_disk_mb: int = Field(
        256, ge=1, le=65536, description="size of a live sandbox's writable /home (its disk)"
    )
    live_processes: int = Field(128, ge=8, le=4096, description="processes in a live sandbox")
    live_timeout_seconds: int = Field(
        300, ge=1, description="a live sandbox's lifetime unless it asks for other"
    )
    live_max_timeout_seconds: int = Field(
        86400, ge=1, description="the longest lifetime a live sandbox may ask for (E2B allows 24 h)"
    )

    prestart: bool = Field(
        True, description="run Python programs in the sandbox's already started interpreter"
    )
    prestart_compilers: bool = Field(
        True,
        description=(
            "warm sandboxes start their language's compiler (catalog: warm_compiler)"
            " or interpreter (warm_run) ahead"
        ),
    )

    # Sandbox filesystem caps.
    workdir_size_mb: int = Field(64, ge=1, le=4096, description="size of the writable /work")
    tmp_size_mb: int = Field(64, ge=1, le=4096, description="size of the writable /tmp")

    # Request-shape caps.
    max_files: int = Field(32, ge=1, le=1000, description="files per request")
    max_file_bytes: int = Field(1 << 20, ge=1, description="bytes per file, decoded")
    max_stdin_bytes: int = Field(8 << 20, ge=0, description="bytes of stdin")
    # 256: what Judge0's 512-character command_line_arguments can split into
    max_args: int = Field(256, ge=0, description="command-line arguments per request")
    max_tests: int = Field(64, ge=1, le=1000, description="test cases per request")

    uid_base: int = Field(60000, ge=1000, description="first uid/gid for sandboxed programs")
    uid_count: int = Field(1000, ge=1, le=65536, description="how many sandbox uids to use")

    # Isolation driver details (docs/isolation.md).
    gvisor_platform: Literal["ptrace", "systrap", "kvm"] = Field(
        "ptrace", description="runsc --platform: ptrace works anywhere; systrap/kvm are faster"
    )
    qemu_accel: Literal["auto", "kvm", "tcg"] = Field(
        "auto", description="qemu driver: auto = KVM if a probe boot succeeds, else TCG"
    )

    debian_mirror: str = Field(
        "", description="Debian archive URL for image builds (empty: taken from host apt sources)"
    )
    image_build_jobs: int = Field(
        2, ge=1, le=16, description="images `tvm images build` builds at once"
    )

    # Gateway (pyroshell): workers, queue, database, keys and limits.
    workers: list[str] = Field(
        default_factory=list, description="worker base URLs, e.g. http://10.0.0.5:8080"
    )
    workers_dns: str = Field(
        "", description="host:port whose DNS records are the workers (a headless service)"
    )
    worker_count: int = Field(
        0,
        ge=0,
        le=64,
        description="worker processes `tvm start` runs; 0: the gateway runs the sandboxes "
        "itself (one HTTP hop, the fastest on one host)",
    )
    worker_port: int = Field(
        8100, ge=1, le=65535, description="first loopback port of those workers"
    )
    health_interval_seconds: float = Field(2.0, gt=0, le=60, description="worker health checks")
    worker_timeout_seconds: float = Field(
        300, gt=0, le=3600, description="longest one execution may take on a worker"
    )
    dispatch_wait_seconds: float = Field(
        30, ge=0, le=600, description="how long a job waits for a free worker before 503"
    )
    database_url: str = Field(
        "", description="SQLAlchemy async URL; empty: sqlite+aiosqlite:///$TVM_HOME/tvm.db"
    )
    dispatcher_concurrency: int = Field(
        8, ge=1, le=1000, description="queued submissions run at once by one gateway"
    )
    max_queue_size: int = Field(1000, ge=1, description="queued submissions; beyond: 503")
    replica_id: str = Field(
        "", description="this gateway's name on its leases; empty: <hostname>:<port>"
    )
    lease_seconds: float = Field(
        15,
        ge=1,
        le=600,
        description="a replica's claim on a submission lasts this long unless renewed",
    )
    max_attempts: int = Field(
        3, ge=1, le=20, description="runs of one async submission interrupted by crashes, at most"
    )
    retention_hours: float = Field(
        168, gt=0, description="finished submissions are deleted after this long"
    )
    callback_max_tries: int = Field(3, ge=1, le=20, description="PUTs to callback_url")
    callback_timeout_seconds: float = Field(5, gt=0, le=60, description="per callback PUT")
    auth_required: bool | None = Field(
        None, description="require an API key; unset: when not on loopback and a key exists"
    )
    key_rate_per_minute: int = Field(120, ge=1, description="default executions/min per key")
    key_burst: int = Field(30, ge=1, description="default token-bucket size per key")
    key_max_concurrent: int = Field(
        10, ge=1, description="default queued + running executions per key"
    )
    anonymous_rate_per_minute: int = Field(
        0, ge=0, description="executions/min per client address without a key; 0: unlimited"
    )
    judge0_enable_delete: bool = Field(
        False, description="allow DELETE /submissions/{token} (off by default, as in Judge0 CE)"
    )
    admin_keys: list[str] = Field(
        default_factory=list,
        description="prefixes of API keys (as `tvm keys list` shows them) with admin rights: "
        "every submission, GET /submissions, Judge0's /authorize",
    )
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) that callbacks may reach although they are loopback, "
        "private, link-local or otherwise not public, e.g. 127.0.0.1/32",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    # Derived locations under the data dir.
    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (flags are applied by the CLI via ``Settings(**flags)``)."""
    return Settings()
