"""Secrets kept out of what the tool prints, logs and publishes."""

from __future__ import annotations

import re
import urllib.parse

# scheme://user:secret@host -> scheme://host, anywhere in a text (sccache's cache location, logs).
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@\"']*@")


def without_userinfo(url: str) -> str:
    """A URL as it may be published: CI clones put tokens in the remote URL
    (https://user:token@host/...), Redis URLs carry passwords, and image labels are public."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def scrub_urls(text: str) -> str:
    """`text` with the user and password of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)
