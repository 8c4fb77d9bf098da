"""A small OCI distribution (registry v2) client on urllib: enough to append a layer to a
base image that already sits in a registry without downloading the base's layers (what
`crane append` does), and to push a local layout byte for byte (digests kept).

Auth: anonymous, HTTP basic, or bearer tokens (the WWW-Authenticate challenge), with
credentials from the files docker and skopeo/podman write: $REGISTRY_AUTH_FILE,
$XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json, ~/.docker/config.json.
Docker's credential helpers are run as docker does: credHelpers[registry], else credsStore
(`docker-credential-<name> get`, the registry on stdin, JSON Username/Secret on stdout).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..core.errors import CommandError, ImageError
from ..core.files import scratch_path
from ..core.progress import ByteProgress
from .oci import DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
# Blobs above one chunk are pushed in chunks (PATCH with Content-Range), each retried where the
# registry says the upload stands, so a dropped connection costs one chunk, not the blob.
CHUNK_BYTES = 16 << 20
CHUNK_RETRIES = 3
RETRY_WAIT_S = 1.0


@dataclass(frozen=True)
class Reference:
    """registry/repository[:tag][@digest], normalised like docker does."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse an image reference; raises ImageError saying what is wrong with it."""
    original = text
    text = text.removeprefix("docker://")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(f"invalid digest in image reference {original!r}",
                             hint="digests look like sha256:<64 hex digits>")
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageError(f"invalid tag {tag!r} in image reference {original!r}")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, text
        if "/" not in repository:
            repository = f"library/{repository}"
    if not repository or not _NAME.match(repository):
        raise ImageError(f"{original!r} is not a valid image reference",
                         hint="use REGISTRY/NAME[:TAG], e.g. nvcr.io/nvidia/tritonserver:24.10-py3 "
                              "or localhost:5000/triton-ops:1 (lower-case names)")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def _auth_files(env: Mapping[str, str]) -> list[Path]:
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    else:  # where `skopeo login` / `podman login` write without XDG_RUNTIME_DIR
        files.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
    if env.get("DOCKER_CONFIG"):
        files.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    files.append(Path(env.get("HOME", str(Path.home()))) / ".docker" / "config.json")
    return files


HELPER_TIMEOUT_S = 30.0


def _helper_credentials(helper: str, registry: str, keys: set[str], where: Path) -> tuple[str, str] | None:
    """Ask docker-credential-<helper> for `registry` (docker's protocol); None if it has none."""
    from ..core import process

    program = f"docker-credential-{helper}"
    for server in sorted(keys, key=lambda k: (k != registry, k)):  # the bare host first
        try:
            # secret_output: its stderr is dropped and its answer is never logged or quoted.
            done = process.run([program, "get"], stage="image", input_text=server + "\n", check=False,
                               timeout=HELPER_TIMEOUT_S, secret_output=True)
        except CommandError as error:
            if error.returncode != 127:  # the deadline: a helper waiting for a prompt nobody sees
                raise ImageError(f"{program} did not answer within {HELPER_TIMEOUT_S:g} s", where=where,
                                 hint=f"unlock the credential store, or log in with `skopeo login {registry}`") from None
            raise ImageError(f"{where} names the credential helper {helper!r}, but {program} is not installed",
                             where=where, hint=f"install {program}, or log in with `skopeo login {registry}` "
                                               "(it writes a plain auths entry)") from None
        if done.returncode != 0:
            continue  # "credentials not found in native keychain": try the next spelling, then give up
        try:
            answer = json.loads(done.output)
        except ValueError:
            raise ImageError(f"{program} get answered something that is not JSON ({len(done.output)} "
                             "characters, not shown: they may hold the secret)", where=where,
                             hint=f"run `echo {server} | {program} get` yourself to see what it says") from None
        if not isinstance(answer, dict):
            raise ImageError(f"{program} get answered JSON that is not an object", where=where)
        if answer.get("Username") == "<token>":
            raise ImageError(f"{program} holds an identity token for {registry}, which trtis-build cannot "
                             "exchange", where=where,
                             hint=f"log in with `skopeo login {registry}` (a user name and password or token)")
        if answer.get("Username") is not None and answer.get("Secret") is not None:
            return answer["Username"], answer["Secret"]
    return None


def credentials(registry: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) for `registry`: per auth file, in order, a credential helper that the
    file assigns to it (credHelpers, then credsStore), else its plain `auths` entry."""
    env = os.environ if env is None else env
    keys = {registry, f"https://{registry}", f"http://{registry}"}
    if registry == DOCKER_HUB:
        keys |= {"https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB_API}
    for path in _auth_files(env):
        try:
            data = json.loads(path.read_text())
            auths = data.get("auths", {}) or {}
        except (OSError, ValueError, AttributeError):
            continue
        helpers = data.get("credHelpers", {}) or {}
        helper = next((helpers[k] for k in helpers if k.rstrip("/") in keys or k in keys), None)
        helper = helper or data.get("credsStore")
        if helper:
            found = _helper_credentials(helper, registry, keys, path)
            if found:
                return found
        for key, entry in auths.items():
            if key.rstrip("/") in keys or key in keys:
                token = (entry or {}).get("auth")
                if token:
                    user, _, password = base64.b64decode(token).decode().partition(":")
                    return user, password
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class _NoRedirectOnPut(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # Blob GETs may redirect to storage (S3, CDN); keep the method and drop auth there.
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


class Registry:
    """One registry host. `insecure`: plain HTTP (default for loopback addresses)."""

    def __init__(self, host: str, *, insecure: bool | None = None, env: Mapping[str, str] | None = None,
                 timeout: float = 60.0):
        self.host = host
        api = DOCKER_HUB_API if host == DOCKER_HUB else host
        if insecure is None:
            insecure = api.split(":")[0] in ("localhost", "127.0.0.1") or api.startswith("[::1]")
        self.base = f"{'http' if insecure else 'https'}://{api}"
        self._env = env
        self._creds: tuple[str, str] | None = None
        self._creds_read = False
        self.timeout = timeout
        self.tokens: dict[str, str] = {}
        self.opener = urllib.request.build_opener(_NoRedirectOnPut())
        self.requests: list[tuple[str, str]] = []  # (method, path): what this client asked for

    @property
    def creds(self) -> tuple[str, str] | None:
        """This registry's credentials, looked up (credential helpers run) only once the
        registry asks for them: a registry that never challenges never reaches a helper."""
        if not self._creds_read:
            self._creds = credentials(self.host, self._env)
            self._creds_read = True
        return self._creds

    # -- plumbing
    def _authorize(self, challenge: str, scope_key: str) -> str | None:
        scheme, params = _challenge(challenge)
        if scheme == "basic":
            if not self.creds:
                return None
            return "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        if scheme != "bearer" or "realm" not in params:
            return None
        if scope_key in self.tokens:
            return self.tokens[scope_key]
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", scope) for scope in params.get("scope", "").split()]
        url = params["realm"] + "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url)
        if self.creds:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.creds).encode()).decode())
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ImageError(f"cannot get a token from {params['realm']}: {exc}", where=self.host,
                             hint=f"log in first: skopeo login {self.host}") from None
        token = body.get("token") or body.get("access_token")
        self.tokens[scope_key] = f"Bearer {token}" if token else None
        return self.tokens[scope_key]

    def _open(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
              data=None, ok=(200,), scope: str = ""):
        """The response (caller closes it); HTTP errors listed in `ok` come back as responses."""
        url = path if path.startswith("http") else self.base + path
        self.requests.append((method, urllib.parse.urlsplit(url).path))
        auth = self.tokens.get(scope)
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
            if auth:
                request.add_header("Authorization", auth)
            try:
                return self.opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as error:
                if error.code == 401 and attempt == 0 and error.headers.get("WWW-Authenticate"):
                    auth = self._authorize(error.headers["WWW-Authenticate"], scope)
                    if auth:
                        if hasattr(data, "seek"):
                            data.seek(0)
                        continue
                if error.code in ok:
                    return error
                raise self._http_error(method, url, error.code, error.read()) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ImageError(f"cannot reach registry {self.host}: {reason}", where=url,
                                 hint="check the registry address and that it is running; a registry "
                                      "without TLS needs --insecure-registry") from None
        raise ImageError(f"access to {url} denied", where=self.host,
                         hint=f"log in with `skopeo login {self.host}` or `docker login {self.host}`")

    def request(self, method: str, path: str, **kwargs) -> tuple[int, Mapping[str, str], bytes]:
        with self._open(method, path, **kwargs) as response:
            return response.status if hasattr(response, "status") else response.code, \
                response.headers, response.read()

    def _http_error(self, method: str, url: str, code: int, body: bytes) -> ImageError:
        try:
            detail = "; ".join(e.get("message", "") for e in json.loads(body).get("errors", []))
        except (ValueError, AttributeError):
            detail = body[:200].decode(errors="replace")
        if code in (401, 403):
            return ImageError(f"registry {self.host} refused {method} {url} ({code}: {detail})",
                              where=self.host, hint=f"log in with `skopeo login {self.host}` and check "
                                                    "that the account may push to this repository")
        if code == 404:
            return ImageError(f"not found in registry {self.host}: {url} ({detail})", where=url,
                              hint="check the image name and tag (skopeo list-tags docker://REPO)")
        error = ImageError(f"registry {self.host} answered {code} to {method} {url}: {detail}", where=url)
        error.http_status = code
        return error

    # -- API
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index."""
        _, headers, body = self.request("GET", f"/v2/{repository}/manifests/{reference}",
                                        headers={"Accept": ACCEPT}, scope=f"{repository}:pull")
        media = headers.get("Content-Type", "").split(";")[0] or json.loads(body).get("mediaType", "")
        return body, media, "sha256:" + hashlib.sha256(body).hexdigest()

    def resolve_image(self, repository: str, reference: str, arch: str = "amd64") -> tuple[bytes, str, str]:
        """Follow an index / manifest list to the linux/<arch> image manifest."""
        body, media, digest = self.get_manifest(repository, reference)
        if media in INDEX_TYPES:
            for item in json.loads(body).get("manifests", []):
                platform = item.get("platform") or {}
                if platform.get("os") == "linux" and platform.get("architecture") == arch:
                    return self.get_manifest(repository, item["digest"])
            raise ImageError(f"{self.host}/{repository}:{reference} has no linux/{arch} image")
        return body, media, digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        _, _, body = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=f"{repository}:pull")
        return body

    def download_blob(self, repository: str, digest: str, path: Path, *, size: int | None = None,
                      log=None) -> None:
        """Stream a blob to `path`, checking its digest (a mismatch leaves nothing behind)."""
        tmp = scratch_path(path.parent, path.name, "download")
        hasher = hashlib.sha256()
        progress = ByteProgress(f"pull {digest[:19]}", size, log)
        try:
            with self._open("GET", f"/v2/{repository}/blobs/{digest}", scope=f"{repository}:pull") as response, \
                    open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
                    progress.advance(len(chunk))
            progress.finish()
            if "sha256:" + hasher.hexdigest() != digest:
                raise ImageError(f"blob {digest} from {self.host}/{repository} does not match its digest",
                                 where=self.host, hint="retry; a proxy or the registry corrupted it")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404),
                                    scope=f"{repository}:push,pull")
        return status == 200

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount (no data moves); False when the registry declines."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        status, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/?{query}",
                                          ok=(201, 202), scope=f"{repository}:push,pull;{source}:pull",
                                          headers={"Content-Length": "0"}, data=b"")
        if status == 202 and headers.get("Location"):  # an upload session we do not need
            try:
                self.request("DELETE", self._absolute(headers["Location"]), ok=(204, 404, 405),
                             scope=f"{repository}:push,pull;{source}:pull")
            except ImageError:
                pass
        return status == 201

    def _absolute(self, location: str) -> str:
        return urllib.parse.urljoin(self.base + "/", location)

    def upload_blob(self, repository: str, digest: str, path: Path, *, log=None) -> None:
        """POST for an upload session; a blob of up to one chunk goes in the closing PUT
        (?digest=), a larger one in PATCHed chunks first, each retried from where the registry
        says the upload stands."""
        scope = f"{repository}:push,pull"
        _, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,), scope=scope,
                                     headers={"Content-Length": "0"}, data=b"")
        location = self._absolute(headers["Location"])
        size = path.stat().st_size
        progress = ByteProgress(f"push {digest[:19]}", size, log)
        with open(path, "rb") as handle:
            if size > CHUNK_BYTES:
                location = self._upload_chunks(location, handle, size, scope, progress)
                body, length = b"", 0
            else:
                body, length = handle, size
            sep = "&" if "?" in location else "?"
            self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", ok=(201,), scope=scope,
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
                         data=body)
        progress.advance(size - progress.done_bytes)
        progress.finish()

    def _upload_chunks(self, location: str, handle, size: int, scope: str, progress: ByteProgress) -> str:
        offset, failures = 0, 0
        while offset < size:
            handle.seek(offset)
            chunk = handle.read(CHUNK_BYTES)
            try:
                _, headers, _ = self.request(
                    "PATCH", location, ok=(202,), scope=scope, data=chunk,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                             "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            except ImageError as error:
                status = getattr(error, "http_status", None)
                failures += 1
                if (status is not None and status < 500 and status != 416) or failures > CHUNK_RETRIES:
                    raise
                time.sleep(RETRY_WAIT_S * failures)
                offset = self._upload_offset(location, scope)   # what the registry kept
                progress.rewind(offset)
                continue
            location = self._absolute(headers.get("Location") or location)
            offset = _range_end(headers.get("Range"), offset + len(chunk))
            progress.advance(offset - progress.done_bytes)
        return location

    def _upload_offset(self, location: str, scope: str) -> int:
        """Where an upload session stands (GET on it: `Range: 0-<last byte>`)."""
        _, headers, _ = self.request("GET", location, ok=(204,), scope=scope)
        return _range_end(headers.get("Range"), 0)

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        _, headers, _ = self.request("PUT", f"/v2/{repository}/manifests/{tag}", ok=(201,),
                                     headers={"Content-Type": media_type}, data=body,
                                     scope=f"{repository}:push,pull")
        return headers.get("Docker-Content-Digest", "")


def _range_end(header: str | None, default: int) -> int:
    """'0-1048575' -> 1048576 (bytes the registry holds); hostile until it parses."""
    match = re.fullmatch(r"(?:bytes=)?0-(\d+)", (header or "").strip())
    return int(match.group(1)) + 1 if match else default


def push_blobs(client: Registry, repository: str, blobs: list[tuple[Descriptor, Path | None]],
               *, mount_from: str | None = None, log=None) -> dict[str, str]:
    """Make every blob present in `repository`: already there, mounted from `mount_from`
    (same registry), or uploaded from its local path. Returns digest -> how."""
    done: dict[str, str] = {}
    for desc, path in blobs:
        if desc.digest in done:
            continue
        if client.has_blob(repository, desc.digest):
            how = "present"
        elif mount_from and mount_from != repository and client.mount_blob(repository, desc.digest, mount_from):
            how = "mounted"
        elif path is not None and path.is_file():
            client.upload_blob(repository, desc.digest, path, log=log)
            how = "uploaded"
        else:
            raise ImageError(f"blob {desc.digest} is neither in {client.host}/{repository} nor available "
                             "locally, and could not be mounted", where=client.host,
                             hint="push without remote append: give --out so the base is fetched first")
        done[desc.digest] = how
        if log:
            log(f"  {how:8} {desc.digest[:19]} ({desc.size:,} bytes)")
    return done
