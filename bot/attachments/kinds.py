"""What an attachment is, told from its name and type before it is downloaded, and what to do with it."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot.render import count

# Chat models take these picture types (OpenAI: PNG, JPEG, WebP, non-animated GIF).
PICTURE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
PICTURE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "jpe", "jfif", "webp", "gif"})
PICTURE_KINDS = "PNG, JPEG, WebP or GIF"
# Audio and video belong to the transcription feature.
MEDIA_EXTENSIONS = frozenset(
    {"mp3", "m4a", "ogg", "oga", "opus", "wav", "flac", "aac", "wma", "mpga", "mp4", "m4v", "mov", "mkv"}
    | {"webm", "avi", "mpeg", "mpg", "3gp"}
)
# Text by extension: prose, data, configuration, logs and source code in the languages people share.
TEXT_EXTENSIONS = frozenset(
    {"txt", "text", "md", "markdown", "mdx", "rst", "adoc", "asciidoc", "org", "tex", "bib", "sty", "log", "out"}
    | {"csv", "tsv", "psv", "json", "jsonl", "ndjson", "json5", "geojson", "ipynb", "yaml", "yml", "toml", "ini"}
    | {"cfg", "conf", "config", "properties", "env", "lock", "xml", "xsd", "xsl", "plist", "html", "htm"}
    | {"xhtml", "css", "scss", "sass", "less", "styl", "svg", "js", "mjs", "cjs", "jsx", "ts", "tsx", "mts"}
    | {"cts", "vue", "svelte", "astro", "py", "pyi", "pyw", "rb", "erb", "php", "phtml", "pl", "pm", "t"}
    | {"java", "kt", "kts", "scala", "sc", "groovy", "gradle", "clj", "cljs", "cljc", "edn", "go", "mod", "sum"}
    | {"rs", "c", "h", "cc", "cpp", "cxx", "c++", "hh", "hpp", "hxx", "ino", "m", "mm", "cs", "csx", "fs"}
    | {"fsi", "fsx", "vb", "swift", "dart", "lua", "luau", "r", "rmd", "jl", "nim", "zig", "v", "sv", "svh"}
    | {"vhd", "vhdl", "asm", "s", "hs", "lhs", "elm", "ml", "mli", "ex", "exs", "erl", "hrl", "gleam", "sol"}
    | {"sh", "bash", "zsh", "fish", "ksh", "ps1", "psm1", "bat", "cmd", "awk", "sed", "tcl", "vim", "el"}
    | {"lisp", "lsp", "scm", "ss", "rkt", "sql", "prisma", "graphql", "gql", "proto", "thrift", "tf", "tfvars"}
    | {"hcl", "nix", "cmake", "mk", "mak", "make", "dockerfile", "containerfile", "bzl", "bazel", "ninja"}
    | {"patch", "diff", "srt", "vtt", "ass", "sub", "po", "pot", "strings", "resx", "csproj", "sln", "vcxproj"}
    | {"xaml", "jinja", "j2", "twig", "liquid", "mustache", "hbs", "handlebars", "pug", "haml", "ejs", "njk"}
    | {"coffee", "cr", "d", "pas", "pp", "f", "f90", "f95", "for", "cob", "cbl", "ada", "adb", "ads", "pro"}
    | {"qml", "glsl", "hlsl", "wgsl", "frag", "vert", "shader", "cu", "cuh", "mlir", "ll", "wat", "http", "rest"}
    | {"gitignore", "gitattributes", "dockerignore", "editorconfig", "htaccess", "npmrc", "nvmrc", "pylintrc"}
)
# Text files that people name without an extension.
TEXT_NAMES = frozenset(
    {"readme", "license", "licence", "copying", "notice", "authors", "contributors", "changelog", "changes"}
    | {"todo", "makefile", "gnumakefile", "dockerfile", "containerfile", "procfile", "gemfile", "rakefile"}
    | {"podfile", "vagrantfile", "jenkinsfile", "brewfile", "justfile", "caddyfile", "codeowners"}
)
TEXT_MEDIA_TYPES = frozenset(
    {"application/json", "application/xml", "application/yaml", "application/x-yaml", "application/toml"}
    | {"application/javascript", "application/x-javascript", "application/ecmascript", "application/sql"}
    | {"application/x-sh", "application/x-shellscript", "application/graphql", "application/x-ndjson"}
    | {"application/x-httpd-php", "application/x-perl", "application/x-ruby", "application/x-tex"}
    | {"application/x-subrip", "application/csv", "image/svg+xml"}
)


class Kind(enum.Enum):
    """What the bot does with an attachment."""

    PICTURE = "picture"  # shown to a model that can see
    TEXT = "text"  # included as text
    PDF = "pdf"  # its text layer included as text
    MEDIA = "media"  # audio or video: for the transcription feature, not the conversation
    OTHER = "other"  # named in a note


class UnusableAttachment(Exception):
    """An attachment the model cannot be given; `note` tells the person so, naming the file."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


@dataclass(frozen=True)
class SharedFile:
    """An attachment as Discord describes it, before downloading it."""

    filename: str
    content_type: str | None
    size: int


@dataclass(frozen=True)
class AttachmentLimits:
    """How much of what people share goes into one turn (the owner's settings)."""

    max_pictures: int = 4
    max_file_chars: int = 100_000  # text of one file (about 100 KB)
    max_turn_chars: int = 200_000  # text of all files of a turn together
    max_download_bytes: int = 100_000_000


@dataclass(frozen=True)
class PlannedFile:
    """An attachment to download and read: its position among the message's attachments, and its kind."""

    index: int
    kind: Kind
    filename: str


@dataclass(frozen=True)
class AttachmentPlan:
    """What to do with a message's attachments before downloading any."""

    read: tuple[PlannedFile, ...]  # to download, then read in this order
    media: tuple[int, ...]  # positions of audio and video, left to the transcription feature
    notes: tuple[str, ...]  # for the person, about what is left out


def classify(filename: str, content_type: str | None) -> Kind:
    """The kind of an attachment from its file name and the content type Discord reports."""
    path = PurePosixPath(filename.lower())
    extension = path.suffix.removeprefix(".")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if extension == "pdf" or media_type == "application/pdf":
        return Kind.PDF
    # The extension first: .ts is TypeScript more often than video/mp2t here, and reading checks the bytes anyway.
    if extension in TEXT_EXTENSIONS or path.name in TEXT_NAMES or path.name.lstrip(".") in TEXT_EXTENSIONS:
        return Kind.TEXT
    if extension in PICTURE_EXTENSIONS or media_type in PICTURE_TYPES:
        return Kind.PICTURE
    if extension in MEDIA_EXTENSIONS or media_type.startswith(("audio/", "video/")):
        return Kind.MEDIA
    if media_type.startswith("text/") or media_type in TEXT_MEDIA_TYPES or media_type.endswith(("+json", "+xml")):
        return Kind.TEXT
    return Kind.OTHER


def plan_attachments(files: Sequence[SharedFile], limits: AttachmentLimits, *, vision: bool) -> AttachmentPlan:
    """Which attachments to download and read, and notes naming the ones left out and why."""
    read: list[PlannedFile] = []
    media: list[int] = []
    notes: list[str] = []
    unseen: list[str] = []  # pictures the model cannot see
    extra: list[str] = []  # pictures beyond the per-turn limit
    pictures = 0
    for index, shared in enumerate(files):
        kind = classify(shared.filename, shared.content_type)
        if kind is Kind.MEDIA:
            media.append(index)
        elif kind is Kind.OTHER:
            notes.append(describe_unreadable(shared.filename))
        elif (note := _size_problem(shared, limits)) is not None:
            notes.append(note)
        elif kind is Kind.PICTURE and not vision:
            unseen.append(shared.filename)
        elif kind is Kind.PICTURE and pictures >= limits.max_pictures:
            extra.append(shared.filename)
        else:
            pictures += kind is Kind.PICTURE
            read.append(PlannedFile(index, kind, shared.filename))
    if unseen:
        notes.append(f"The model here can't see pictures, so I left out {join_names(unseen)}.")
    if extra:
        most = count(limits.max_pictures, "picture")
        notes.append(f"I look at {most} per message at most, so I left out {join_names(extra)}.")
    return AttachmentPlan(tuple(read), tuple(media), tuple(notes))


def _size_problem(shared: SharedFile, limits: AttachmentLimits) -> str | None:
    if shared.size <= 0:
        return f"{quoted(shared.filename)} is empty, so there was nothing to read."
    if shared.size > limits.max_download_bytes:
        return (
            f"{quoted(shared.filename)} is {_megabytes(shared.size)}; I download files of at most "
            f"{_megabytes(limits.max_download_bytes)}."
        )
    return None


def describe_unreadable(filename: str) -> str:
    """The note for an attachment of a kind the bot cannot read: "I can't read .zip files (`backup.zip`)."."""
    path = PurePosixPath(filename)
    extension = path.suffix.lower()
    if not extension:
        return f"I can't tell what kind of file {quoted(filename)} is, so I left it out."
    if extension.removeprefix(".") in _OTHER_PICTURES:
        return f"I can't look at {extension} pictures ({quoted(filename)}). Send it as a {PICTURE_KINDS}."
    return f"I can't read {extension} files, so I left out {quoted(filename)}."


# Picture formats people share that chat models do not take.
_OTHER_PICTURES = frozenset({"heic", "heif", "avif", "tif", "tiff", "bmp", "ico", "psd", "raw", "cr2", "nef", "dng"})


def out_of_time(deadline: float | None, stopping: Callable[[], bool] | None) -> bool:
    """Whether blocking work must stop: its deadline (a time.monotonic() value) passed, or it was asked to."""
    return (deadline is not None and time.monotonic() >= deadline) or (stopping is not None and stopping())


def quoted(filename: str) -> str:
    """A file name as notes show it: in backticks, with characters that would break Markdown replaced."""
    cleaned = "".join(" " if not char.isprintable() else char for char in filename).strip()
    return "`" + (cleaned.replace("`", "'")[:100] or "unnamed file") + "`"


def join_names(filenames: Sequence[str]) -> str:
    """File names for a sentence: `a`, `b` and `c`."""
    names = [quoted(name) for name in filenames]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.3g} MB"
