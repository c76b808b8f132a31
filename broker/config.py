"""Node configuration: embedded defaults, YAML file, then `SHOAL_<SECTION>_<KEY>`
environment overrides (see ../shared/CONTRACT.md and docs/configuration.md).

Every problem raises ConfigError whose message is one line naming the key, the value
and what was expected; `shoal start` prints it and exits non-zero.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml


class ConfigError(ValueError):
    """A bad config key or value. str(error) is a single line for the operator."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"config error: {key}={value!r}: expected {expected}")


# ---------------------------------------------------------------------------------------
# value parsers

_SIZE_UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_RE = re.compile(r"^\s*(-?\d+)\s*([A-Za-z]*)\s*$")


def parse_size(key: str, value: object) -> int:
    """Bytes from an int or '<n><B|KiB|MiB|GiB|TiB>'; -1 means unbounded."""
    expected = "a size like 512MiB (units B, KiB, MiB, GiB, TiB) or -1 for unbounded"
    return _parse_scaled(key, value, _SIZE_UNITS, expected)


def parse_duration_ms(key: str, value: object) -> int:
    """Milliseconds from an int or '<n><ms|s|m|h|d>'; -1 means unbounded."""
    expected = "a duration like 6h (units ms, s, m, h, d; plain integers are ms) or -1"
    return _parse_scaled(key, value, _DURATION_UNITS, expected)


def _parse_scaled(key: str, value: object, units: Mapping[str, int], expected: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(key, value, expected)
    if isinstance(value, int):
        number, unit = value, ""
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        number, unit = int(match.group(1)), match.group(2).lower()
    else:
        raise ConfigError(key, value, expected)
    if number == -1 and unit == "":
        return -1
    if number < 0 or (unit and unit not in units):
        raise ConfigError(key, value, expected)
    return number * (units[unit] if unit else 1)


def parse_host_port(key: str, value: object) -> tuple[str, int]:
    expected = "host:port, e.g. 127.0.0.1:9092"
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(key, value, expected)
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, value, expected)
    return host, int(port_text)


def parse_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ConfigError(key, value, "true or false")


def parse_int(key: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"an integer >= {minimum}")
    return value


def parse_choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(choices))
    return value


# ---------------------------------------------------------------------------------------
# typed config


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TierConfig:
    name: str
    local_retention_bytes: int = 1024**3
    local_retention_ms: int = 6 * 3_600_000
    retention_bytes: int = -1
    retention_ms: int = 7 * 86_400_000
    upload_compression: str = "none"  # none | zstd | lz4 (objects in the bucket)


@dataclass(frozen=True)
class CloudStorageConfig:
    url: str
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    upload_interval_ms: int = 10 * 60_000  # a quiet partition's open segment is sealed
    upload_concurrency: int = 4
    upload_bandwidth_bytes: int = -1  # per second per node; -1 = unlimited
    chunk_size_bytes: int = 1024 * 1024
    cache_dir: str | None = None  # default: <data_dir>/cloud-cache
    cache_size_bytes: int = 1024**3
    remote_write_default: bool = True  # remote.storage.enable for topics that don't say

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]


@dataclass(frozen=True)
class ClusterConfig:
    rpc_listen: Address
    seeds: tuple[Address, ...]
    password: str | None = None  # encrypts and authenticates controller traffic between nodes


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 128 * 1024 * 1024
    segment_ms: int = 7 * 86_400_000
    flush: str = "fsync"  # fsync: acks=1/all wait for fsync (group commit); relaxed: don't
    flush_interval_ms: int = 1000  # relaxed mode: background fsync period


@dataclass(frozen=True)
class NodeConfig:
    node_id: int = 0
    data_dir: Path = Path("./shoal-data")
    kafka_listen: Address = Address("127.0.0.1", 9092)
    kafka_advertise: Address = Address("127.0.0.1", 9092)
    admin_listen: Address = Address("127.0.0.1", 9644)
    auto_create_topics: bool = True
    default_partitions: int = 1
    default_replication_factor: int = 1
    cluster: ClusterConfig | None = None
    cloud_storage: CloudStorageConfig | None = None
    tiers: dict[str, TierConfig] = field(default_factory=dict)
    topic_tiers: tuple[tuple[str, str], ...] = ()
    log: LogConfig = LogConfig()
    group_initial_rebalance_delay_ms: int = 3000
    log_level: str = "INFO"

    def tier_for_topic(self, topic: str, explicit_tier: str | None = None) -> TierConfig:
        """`shoal.tier` wins, then the first matching `topic_tiers` glob, then 'default'."""
        if explicit_tier and explicit_tier in self.tiers:
            return self.tiers[explicit_tier]
        for pattern, tier_name in self.topic_tiers:
            if fnmatch.fnmatchcase(topic, pattern):
                return self.tiers[tier_name]
        return self.tiers.get("default", TierConfig("default"))


# The embedded cold tier lives beside the hot tier unless a url is given.
DEFAULT_CLOUD_URL = "file://<data_dir>/cloud"

EMBEDDED_DEFAULTS: dict[str, Any] = {
    "node_id": 0,
    "data_dir": "./shoal-data",
    "kafka_api": {"listen": "127.0.0.1:9092"},
    "admin_api": {"listen": "127.0.0.1:9644"},
    "auto_create_topics": True,
    "default_partitions": 1,
    "default_replication_factor": 1,
    "cloud_storage": {"url": DEFAULT_CLOUD_URL},
    "tiers": {
        "default": {
            "local_retention_bytes": "1GiB",
            "local_retention_ms": "6h",
            "retention_bytes": -1,
            "retention_ms": "7d",
        }
    },
    "topic_tiers": {},
}

# ---------------------------------------------------------------------------------------
# loading

_TOP_LEVEL_SCALARS = (
    "node_id", "data_dir", "auto_create_topics", "default_partitions",
    "default_replication_factor", "group_initial_rebalance_delay", "log_level",
)
_SECTIONS: dict[str, tuple[str, ...]] = {
    "kafka_api": ("listen", "advertise"),
    "admin_api": ("listen",),
    "cluster": ("rpc_listen", "seeds", "password"),
    "cloud_storage": (
        "url", "endpoint", "region", "access_key", "secret_key", "upload_interval",
        "upload_concurrency", "upload_bandwidth", "chunk_size", "cache_dir", "cache_size",
        "remote_write_default",
    ),
    "log": ("segment_bytes", "segment_ms", "flush", "flush_interval"),
}
_TIER_KEYS = (
    "local_retention_bytes", "local_retention_ms", "retention_bytes", "retention_ms",
    "upload_compression",
)


# SHOAL_* variables that are not node config keys: the CLI's, the dev script's and the test
# harness's own. Any other SHOAL_* variable must name a config key (a typo stops start-up).
NON_CONFIG_ENVIRONMENT = frozenset({
    "SHOAL_CONFIG", "SHOAL_BROKERS", "SHOAL_ADMIN", "SHOAL_VENV", "SHOAL_SOAK", "SHOAL_BENCH",
    "SHOAL_TERRAFORM", "SHOAL_CHECKOV",
})
NON_CONFIG_ENVIRONMENT_PREFIXES = ("SHOAL_TEST_",)


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Embedded defaults, overlaid by the YAML file at `path`, overlaid by the environment."""
    raw = _deep_copy(EMBEDDED_DEFAULTS)
    if path is not None:
        _deep_merge(raw, _read_yaml(Path(path)))
    _apply_environment(raw, os.environ if environ is None else environ)
    return build_config(raw)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError("--config", str(path), f"a readable YAML file ({error.strerror})")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError("--config", str(path), f"valid YAML{where}")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError("--config", str(path), "a YAML mapping of config keys")
    return loaded


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    return value


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if key in ("tiers", "topic_tiers") and isinstance(value, dict):
            # a file that names its own tiers replaces the embedded ones except 'default'
            merged = base.get(key) if isinstance(base.get(key), dict) else {}
            for name, tier in value.items():
                if isinstance(tier, dict) and isinstance(merged.get(name), dict):
                    merged[name] = {**merged[name], **tier}
                else:
                    merged[name] = tier
            base[key] = merged
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("SHOAL_") or name == "SHOAL_CONFIG":
            continue
        key = name[len("SHOAL_"):].lower()
        if key in _TOP_LEVEL_SCALARS:
            raw[key] = value
            continue
        if key == "topic_tiers":
            raw["topic_tiers"] = _env_yaml(name, value)
            continue
        if _apply_section_env(raw, key, name, value):
            continue
        if key.startswith("tiers_") and _apply_tier_env(raw, key[len("tiers_"):], value):
            continue
        if name in NON_CONFIG_ENVIRONMENT or name.startswith(NON_CONFIG_ENVIRONMENT_PREFIXES):
            continue
        raise ConfigError(name, value, _known_environment_hint(name))


def environment_names() -> list[str]:
    """Every SHOAL_* variable that sets a node config key (tiers as one pattern)."""
    names = [f"SHOAL_{key.upper()}" for key in _TOP_LEVEL_SCALARS + ("topic_tiers",)]
    names += [f"SHOAL_{section.upper()}_{key.upper()}" for section, keys in _SECTIONS.items() for key in keys]
    names += [f"SHOAL_TIERS_<TIER>_{key.upper()}" for key in _TIER_KEYS]
    return names


def _known_environment_hint(name: str) -> str:
    candidates = environment_names()
    if name.startswith("SHOAL_TIERS_"):
        tier = name[len("SHOAL_TIERS_"):].split("_", 1)[0]
        candidates = [f"SHOAL_TIERS_{tier}_{key.upper()}"
                      for key in _TIER_KEYS] + candidates
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    return f"a Shoal config variable{suggestion}; see docs/configuration.md for the list"


def _apply_section_env(raw: dict[str, Any], key: str, name: str, value: str) -> bool:
    for section, keys in _SECTIONS.items():
        for section_key in keys:
            if key == f"{section}_{section_key}":
                target = raw.setdefault(section, {})
                if not isinstance(target, dict):
                    raise ConfigError(section, target, "a mapping")
                if section_key == "seeds":
                    target[section_key] = [s.strip() for s in value.split(",") if s.strip()]
                else:
                    target[section_key] = value
                return True
    return False


def _apply_tier_env(raw: dict[str, Any], rest: str, value: str) -> bool:
    for tier_key in _TIER_KEYS:
        if rest.endswith("_" + tier_key):
            tier_name = rest[: -len(tier_key) - 1]
            raw.setdefault("tiers", {}).setdefault(tier_name, {})[tier_key] = value
            return True
    return False


def _env_yaml(name: str, value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(name, value, "a YAML/JSON mapping")


def build_config(raw: Mapping[str, Any]) -> NodeConfig:
    """Validate a raw mapping (YAML shape) into a NodeConfig."""
    known = set(_TOP_LEVEL_SCALARS) | set(_SECTIONS) | {"tiers", "topic_tiers"}
    for key in raw:
        if key not in known:
            raise ConfigError(str(key), raw[key], "a known key: " + ", ".join(sorted(known)))
    kafka_api = _section(raw, "kafka_api")
    admin_api = _section(raw, "admin_api")
    listen = Address(*parse_host_port("kafka_api.listen", kafka_api.get("listen", "127.0.0.1:9092")))
    advertise_raw = kafka_api.get("advertise")
    advertise = Address(*parse_host_port("kafka_api.advertise", advertise_raw)) if advertise_raw else listen
    if advertise.host in ("0.0.0.0", "::") :
        raise ConfigError("kafka_api.advertise", str(advertise), "a host clients can reach (set kafka_api.advertise when listening on 0.0.0.0)")
    data_dir = raw.get("data_dir", "./shoal-data")
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError("data_dir", data_dir, "a directory path")
    tiers = _build_tiers(raw.get("tiers") or {})
    topic_tiers = _build_topic_tiers(raw.get("topic_tiers") or {}, tiers)
    log_level = str(raw.get("log_level", "INFO")).upper()
    parse_choice("log_level", log_level, ("DEBUG", "INFO", "WARNING", "ERROR"))
    return NodeConfig(
        node_id=parse_int("node_id", raw.get("node_id", 0)),
        data_dir=Path(data_dir),
        kafka_listen=listen,
        kafka_advertise=advertise,
        admin_listen=Address(*parse_host_port("admin_api.listen", admin_api.get("listen", "127.0.0.1:9644"))),
        auto_create_topics=parse_bool("auto_create_topics", raw.get("auto_create_topics", True)),
        default_partitions=parse_int("default_partitions", raw.get("default_partitions", 1), 1),
        default_replication_factor=parse_int(
            "default_replication_factor", raw.get("default_replication_factor", 1), 1),
        cluster=_build_cluster(raw.get("cluster")),
        cloud_storage=_build_cloud_storage(raw.get("cloud_storage"), data_dir),
        tiers=tiers,
        topic_tiers=topic_tiers,
        log=_build_log(_section(raw, "log")),
        group_initial_rebalance_delay_ms=parse_duration_ms(
            "group_initial_rebalance_delay", raw.get("group_initial_rebalance_delay", 3000)),
        log_level=log_level,
    )


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        raise ConfigError(name, section, "a mapping of " + ", ".join(_SECTIONS[name]))
    for key in section:
        if key not in _SECTIONS[name]:
            raise ConfigError(f"{name}.{key}", section[key],
                              f"a known key of {name}: " + ", ".join(_SECTIONS[name]))
    return section


def _build_cluster(raw: Any) -> ClusterConfig | None:
    if raw is None:
        return None
    section = _section({"cluster": raw}, "cluster")
    rpc = Address(*parse_host_port("cluster.rpc_listen", section.get("rpc_listen")))
    seeds_raw = section.get("seeds", [])
    if isinstance(seeds_raw, str):
        seeds_raw = [s.strip() for s in seeds_raw.split(",") if s.strip()]
    if not isinstance(seeds_raw, list):
        raise ConfigError("cluster.seeds", seeds_raw, "a list of host:port")
    seeds = tuple(Address(*parse_host_port("cluster.seeds", seed)) for seed in seeds_raw)
    if rpc not in seeds:
        raise ConfigError("cluster.seeds", ",".join(str(seed) for seed in seeds),
                          f"a list of the founding nodes' rpc addresses that includes this node's "
                          f"cluster.rpc_listen ({rpc})")
    password = section.get("password")
    if password is not None and (not isinstance(password, str) or len(password) < 8):
        raise ConfigError("cluster.password", "***", "a string of at least 8 characters")
    return ClusterConfig(rpc_listen=rpc, seeds=seeds, password=password)


def _build_cloud_storage(raw: Any, data_dir: str) -> CloudStorageConfig | None:
    if raw is None:
        return None
    section = _section({"cloud_storage": raw}, "cloud_storage")
    url = section.get("url")
    if url == DEFAULT_CLOUD_URL:
        url = "file://" + str(Path(data_dir) / "cloud")
    if not isinstance(url, str) or not re.match(r"^(file://.+|s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?)$", url):
        raise ConfigError("cloud_storage.url", url, "file://PATH or s3://BUCKET[/PREFIX]")
    endpoint = section.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not re.match(r"^https?://", endpoint)):
        raise ConfigError("cloud_storage.endpoint", endpoint, "an http:// or https:// URL")
    optional: Callable[[str], str | None] = lambda key: (
        None if section.get(key) in (None, "") else str(section.get(key)))
    defaults = CloudStorageConfig(url=url)
    return CloudStorageConfig(
        url=url,
        endpoint=endpoint,
        region=str(section.get("region", defaults.region)),
        access_key=optional("access_key"),
        secret_key=optional("secret_key"),
        upload_interval_ms=parse_duration_ms(
            "cloud_storage.upload_interval", section.get("upload_interval", defaults.upload_interval_ms)),
        upload_concurrency=parse_int(
            "cloud_storage.upload_concurrency", section.get("upload_concurrency", 4), 1),
        upload_bandwidth_bytes=parse_size(
            "cloud_storage.upload_bandwidth", section.get("upload_bandwidth", -1)),
        chunk_size_bytes=_positive_size("cloud_storage.chunk_size", section.get("chunk_size", defaults.chunk_size_bytes)),
        cache_dir=optional("cache_dir"),
        cache_size_bytes=_positive_size("cloud_storage.cache_size", section.get("cache_size", defaults.cache_size_bytes)),
        remote_write_default=parse_bool(
            "cloud_storage.remote_write_default", section.get("remote_write_default", True)),
    )


def _positive_size(key: str, value: object) -> int:
    size = parse_size(key, value)
    if size <= 0:
        raise ConfigError(key, value, "a positive size like 1MiB")
    return size


def _build_tiers(raw: Any) -> dict[str, TierConfig]:
    if not isinstance(raw, dict):
        raise ConfigError("tiers", raw, "a mapping of tier name -> retention settings")
    tiers: dict[str, TierConfig] = {}
    for name, settings in raw.items():
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise ConfigError(f"tiers.{name}", settings, "a mapping of " + ", ".join(_TIER_KEYS))
        for key in settings:
            if key not in _TIER_KEYS:
                raise ConfigError(f"tiers.{name}.{key}", settings[key], "one of " + ", ".join(_TIER_KEYS))
        base = TierConfig(str(name))
        tiers[str(name)] = TierConfig(
            name=str(name),
            local_retention_bytes=parse_size(f"tiers.{name}.local_retention_bytes", settings.get("local_retention_bytes", base.local_retention_bytes)),
            local_retention_ms=parse_duration_ms(f"tiers.{name}.local_retention_ms", settings.get("local_retention_ms", base.local_retention_ms)),
            retention_bytes=parse_size(f"tiers.{name}.retention_bytes", settings.get("retention_bytes", base.retention_bytes)),
            retention_ms=parse_duration_ms(f"tiers.{name}.retention_ms", settings.get("retention_ms", base.retention_ms)),
            upload_compression=parse_choice(f"tiers.{name}.upload_compression", settings.get("upload_compression", "none"), ("none", "zstd", "lz4")),
        )
    tiers.setdefault("default", TierConfig("default"))
    return tiers


def _build_topic_tiers(raw: Any, tiers: Mapping[str, TierConfig]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise ConfigError("topic_tiers", raw, "a mapping of topic glob -> tier name")
    result = []
    for pattern, tier_name in raw.items():
        if tier_name not in tiers:
            raise ConfigError(f"topic_tiers.{pattern}", tier_name,
                              "the name of a tier defined under tiers: " + ", ".join(sorted(tiers)))
        result.append((str(pattern), str(tier_name)))
    return tuple(result)


def _build_log(section: Mapping[str, Any]) -> LogConfig:
    base = LogConfig()
    return LogConfig(
        segment_bytes=_positive_size("log.segment_bytes", section.get("segment_bytes", base.segment_bytes)),
        segment_ms=parse_duration_ms("log.segment_ms", section.get("segment_ms", base.segment_ms)),
        flush=parse_choice("log.flush", section.get("flush", "fsync"), ("fsync", "relaxed")),
        flush_interval_ms=parse_duration_ms("log.flush_interval", section.get("flush_interval", 1000)),
    )
