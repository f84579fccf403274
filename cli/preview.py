"""`newsletter preview`: render an issue exactly as publishing would, check it, send nothing.

Every language of the issue goes through the publish function's own `render_variants` and the
sender's own `MessageTemplate`, so the files written are what a reader of that language would get.
`check` then runs cheap deliverability rules over each language's sample message, and
`translations.check` compares each translation with the default. Each rule gives an "ok" finding
when it passes, so the printed report reads as a checklist.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import PublishSettings
from newsletter.issue import Issue, parse_document
from newsletter.message import MessageTemplate, PreparedIssue
from newsletter.personalize import marker
from newsletter.render import Rendered

if TYPE_CHECKING:
    from rich.console import Console

# --- Thresholds ---------------------------------------------------------------------------------

# Gmail hides everything after ~102 KB of HTML ("[Message clipped]"); measured here on the decoded
# UTF-8 HTML part, which quoted-printable makes a little larger on the wire.
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARN_SHARE = 0.8
SUBJECT_MAX = 60  # mobile inboxes cut subjects around here
PREHEADER_MIN, PREHEADER_MAX = 40, 100  # shorter lets body text leak into the preview; longer is cut
TEXT_RATIO_WARN, TEXT_RATIO_ERROR = 0.6, 0.25  # text part's words / HTML's visible words
SCREEN_TIMEOUT = 60
VIEWPORTS = {"desktop": (1024, 3200), "phone": (375, 4800)}  # tall windows: --screenshot has no full-page mode
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# The one sample recipient; never a real subscriber.
SAMPLE_ADDRESS, SAMPLE_NAME, SAMPLE_TOKEN = "reader@example.org", "Sample Reader", "preview-token"


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "ok" | "info" (info: a note, e.g. screenshots skipped)
    rule: str
    message: str
    language: str | None = None  # the variant it is about; None: the issue as a whole


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


@dataclass
class PreviewResult:
    issue: Issue
    report: Report
    # html, text, web, eml; screenshot-desktop / screenshot-phone when made; a translation's
    # are "<language> html" and so on
    files: dict[str, Path]


@dataclass(frozen=True)
class Sample:
    """Stand-ins for what the deployed stack's settings and list record supply."""

    sender_name: str = "Newsletter"
    sender_address: str = "news@example.org"
    web_base_url: str = "https://example.org/web"
    unsubscribe_base_url: str = "https://example.org/unsubscribe"
    unsubscribe_mailto: str = "unsubscribe@example.org"
    list_name: str | None = None  # None: the list id, as publishing does for a list without a name


# --- Rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One language of the issue as publishing renders it."""

    language: str
    translation: str | None  # None for the default language
    issue: Issue  # the issue as that language's readers read it
    rendered: Rendered
    prepared: dict  # what the sender would read from the bucket


def render_all(issue: Issue, sample: Sample = Sample()) -> list[Variant]:
    """Every language rendered by the publish function's own code, the default first."""
    from newsletter.publish import render_variants

    settings = PublishSettings(
        bucket_name="preview",
        lists_table="",
        issues_table="",
        fanout_queue_url="",
        web_base_url=sample.web_base_url,
        sender_address=sample.sender_address,
        sender_name=sample.sender_name,
    )
    mailing_list = {"name": sample.list_name} if sample.list_name else {}
    out = []
    for v in render_variants(issue, mailing_list, settings=settings):
        # Through JSON, as the sender reads message.json from the bucket.
        prepared = json.loads(json.dumps(v.prepared))
        rendered = Rendered(html=prepared["html"], text=prepared["text"], web=v.web)
        out.append(Variant(v.language, v.translation, issue.variant(v.language), rendered, prepared))
    return out


def render(issue: Issue, sample: Sample = Sample()) -> tuple[Rendered, dict]:
    """The issue's default language rendered: (parts, the stored message.json)."""
    default = render_all(issue.variant(issue.language), sample)[0]
    return default.rendered, default.prepared


def sample_message(prepared: dict, sample: Sample = Sample()) -> bytes:
    """One raw message for the sample reader, made the way the send function makes every message."""
    template = MessageTemplate(
        PreparedIssue.from_json(prepared), base_url=sample.unsubscribe_base_url, mailbox=sample.unsubscribe_mailto
    )
    return template.render(address=SAMPLE_ADDRESS, name=SAMPLE_NAME, token=SAMPLE_TOKEN)


def parts(message: bytes) -> tuple[str, str, email.message.EmailMessage]:
    """The decoded HTML and text parts of a raw message, and the parsed message."""
    msg = email.message_from_bytes(message, policy=email.policy.default)
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    html = html_part.get_content() if html_part else ""
    text = text_part.get_content() if text_part else ""
    return html.replace("\r\n", "\n"), text.replace("\r\n", "\n"), msg


# --- Reading the HTML ---------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HIDDEN = {"head", "style", "script", "title"}


class _Scan(HTMLParser):
    """Visible text, links (href, text) and images (attributes) of an HTML document."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[tuple[str | None, str]] = []
        self.images: list[dict[str, str | None]] = []
        self._hidden = 0  # depth inside an element nobody sees (head, style, display:none)
        self._link: tuple[str | None, list[str]] | None = None
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a":
            self._link = (a.get("href"), [])
        if tag in _VOID:
            return
        style = re.sub(r"\s", "", a.get("style") or "").lower()
        if self._hidden or tag in _HIDDEN or "display:none" in style:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self.links.append((self._link[0], _squash(" ".join(self._link[1]))))
            self._link = None
        if self._hidden and tag not in _VOID:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link[1].append(data)
        if not self._hidden:
            self.text.append(data)


def _squash(text: str) -> str:
    # \s covers the no-break spaces editors paste; U+200C is the preheader's padding.
    return re.sub(r"\s+", " ", text.replace("\u200c", " ")).strip()


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


# --- Rules --------------------------------------------------------------------------------------

Problems = list[tuple[str, str]]  # (level, message)


def _size(html: str) -> Problems:
    size = len(html.encode("utf-8"))
    said = f"HTML part is {size / 1024:.1f} KB ({size:,} bytes); Gmail clips above 102 KB ({GMAIL_CLIP_BYTES:,} bytes)"
    if size > GMAIL_CLIP_BYTES:
        return [("error", said + ": readers would see '[Message clipped]' and lose the footer and unsubscribe link")]
    if size > SIZE_WARN_SHARE * GMAIL_CLIP_BYTES:
        return [("warning", said + f": over {SIZE_WARN_SHARE:.0%} of the limit")]
    return []


def _subject(subject: str) -> Problems:
    if not subject.strip():
        return [("error", "the subject is empty")]
    out: Problems = []
    if len(subject) > SUBJECT_MAX:
        out.append(("warning", f"{len(subject)} characters; phones cut subjects after about {SUBJECT_MAX}"))
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.7 * len(letters):
        out.append(("warning", "mostly capital letters: spam filters and readers take it for shouting"))
    if re.search(r"[!?]{2,}|\${2,}", subject):
        out.append(("warning", "repeated '!', '?' or '$': a classic spam-filter signal"))
    return out


def _preheader(preheader: str | None) -> Problems:
    if not preheader:
        return [("warning", "no preheader: inboxes show the body's first words (the 'view in browser' line)")]
    if len(preheader) < PREHEADER_MIN:
        short = f"{len(preheader)} characters; under {PREHEADER_MIN} the body's first words fill the preview"
        return [("warning", short)]
    if len(preheader) > PREHEADER_MAX:
        return [("warning", f"{len(preheader)} characters; inboxes show about {PREHEADER_MAX}, the rest is cut")]
    return []


def _images(images: list[dict[str, str | None]]) -> Problems:
    # Missing alt: screen readers read the file name and image-blocking clients show nothing.
    # Empty alt is correct only for decorative images, so it is a warning to double-check.
    out: Problems = []
    for img in images:
        src = _short(img.get("src") or "(no src)")
        if img.get("alt") is None:
            out.append(("error", f"image without an alt attribute: {src}"))
        elif not img["alt"].strip():
            out.append(("warning", f"image with empty alt text (fine only if decorative): {src}"))
    return out


def _links(links: list[tuple[str | None, str]]) -> Problems:
    out: Problems = []
    for href, text in links:
        if href is None:
            continue  # an anchor, not a link
        url = href.strip()
        shown = f"'{_short(text, 40)}' → {_short(url) or '(empty)'}"
        scheme = m.group(1).lower() if (m := re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)) else ""
        if not url or url == "#":
            out.append(("error", f"link goes nowhere: {shown}"))
        elif url.startswith("#") or scheme in ("https", "mailto", "tel"):
            continue  # in-page anchors (the contents list) are fine
        elif scheme in ("javascript", "data", "vbscript", "file"):
            out.append(("error", f"{scheme}: link (mail clients strip it, filters flag it as phishing): {shown}"))
        elif scheme == "http":
            out.append(("warning", f"unencrypted http link (use https): {shown}"))
        elif not scheme:
            out.append(("error", f"relative link (an email has no base address): {shown}"))
        else:
            out.append(("warning", f"unusual {scheme}: link: {shown}"))
    return out


def _list_unsubscribe(msg: email.message.EmailMessage) -> tuple[Problems, str | None]:
    # Gmail and Yahoo require one-click unsubscribe (RFC 8058) from bulk senders since 2024.
    out: Problems = []
    uris = re.findall(r"<([^>]*)>", str(msg.get("List-Unsubscribe", "")))
    https = next((u for u in uris if u.lower().startswith("https://")), None)
    if https is None:
        out.append(("error", "no List-Unsubscribe header with an https URL"))
    if str(msg.get("List-Unsubscribe-Post", "")).strip() != "List-Unsubscribe=One-Click":
        out.append(("error", "no 'List-Unsubscribe-Post: List-Unsubscribe=One-Click' header (RFC 8058 one-click)"))
    return out, https


def _unsubscribe_link(rendered: Rendered, url: str | None, hrefs: set[str], text: str) -> Problems:
    out: Problems = []
    # The marker is what makes each reader's link their own; a fixed URL would unsubscribe nobody.
    mark = marker("unsubscribe_url")
    for part, body in (("HTML", rendered.html), ("text", rendered.text)):
        if mark not in body:
            out.append(("error", f"the {part} part has no per-reader unsubscribe link"))
    if url and not out:
        if url not in hrefs:
            out.append(("error", "the sample reader's unsubscribe URL is not a link in the HTML part"))
        if url not in text:
            out.append(("error", "the sample reader's unsubscribe URL is not in the text part"))
    return out


def _postal_address(address: str, html_text: str, text: str) -> Problems:
    # CAN-SPAM (and CASL) require the sender's physical postal address in every message.
    lines = [_squash(line) for line in address.splitlines() if line.strip()]
    out: Problems = []
    for part, body in (("HTML", html_text), ("text", text)):
        missing = [line for line in lines if line not in body]
        if missing:
            out.append(("error", f"postal address missing from the {part} part: {_short(' / '.join(missing))}"))
    if not re.search(r"\d", address):
        vague = f"'{_short(address, 40)}' has no number: a street address, postcode or PO box is expected"
        out.append(("warning", vague))
    return out


def _headings(issue: Issue) -> list[str]:
    out = [issue.title]
    if issue.spotlight:
        out.append(issue.spotlight.title)
    out += [item.title for item in issue.news]
    for section in issue.sections:
        out.append(section.title)
        out += [entry.title for entry in section.items if entry.title]
    return out


def _text_headings(issue: Issue, html_text: str, text: str) -> Problems:
    # Filters score a text part that says something else than the HTML as suspicious.
    out: Problems = []
    for part, body in (("HTML", html_text), ("text", text)):
        missing = [h for h in _headings(issue) if _squash(h) not in body]
        if missing:
            shown = "; ".join(f"'{_short(h)}'" for h in missing[:3]) + (" and more" if len(missing) > 3 else "")
            out.append(("error", f"{len(missing)} heading(s) missing from the {part} part: {shown}"))
    return out


def _text_length(html_text: str, text: str) -> Problems:
    html_words, text_words = _words(html_text), _words(text)
    ratio = text_words / html_words if html_words else 1.0
    said = f"the text part has {text_words} words, the HTML {html_words} ({ratio:.0%})"
    if ratio < TEXT_RATIO_ERROR:
        return [("error", said + f"; under {TEXT_RATIO_ERROR:.0%} it looks like a stub to spam filters")]
    if ratio < TEXT_RATIO_WARN:
        return [("warning", said + f"; under {TEXT_RATIO_WARN:.0%} text-only readers miss content")]
    return []


def _rule(rule: str, problems: Problems, ok: str, language: str | None = None) -> list[Finding]:
    return [Finding(level, rule, msg, language) for level, msg in problems] or [Finding("ok", rule, ok, language)]


def check(issue: Issue, rendered: Rendered, message: bytes, language: str | None = None) -> Report:
    """The deliverability rules, over the issue (as one language's readers read it), its rendered
    parts and one sample message; `language` labels the findings of a multilingual issue."""
    html, text, msg = parts(message)
    scan = _Scan(html)
    html_text, text_flat = _squash(" ".join(scan.text)), _squash(text)
    size = len(html.encode("utf-8"))
    header_problems, unsub_url = _list_unsubscribe(msg)
    hrefs = {h for h, _ in scan.links if h}
    address, headings = issue.footer.postal_address, len(_headings(issue))
    words = f"text part {_words(text_flat)} words, HTML {_words(html_text)}"
    rules = [
        ("html-size", _size(html), f"HTML part is {size / 1024:.1f} KB of Gmail's 102 KB clipping limit"),
        ("subject", _subject(issue.subject), f"{len(issue.subject)} characters"),
        ("preheader", _preheader(issue.preheader), f"{len(issue.preheader or '')} characters"),
        ("images", _images(scan.images), f"{len(scan.images)} image(s), all with alt text"),
        ("links", _links(scan.links), f"{len(hrefs)} distinct link(s), all https, mailto or in-page"),
        ("list-unsubscribe", header_problems, "List-Unsubscribe (https) and List-Unsubscribe-Post present"),
        ("unsubscribe-link", _unsubscribe_link(rendered, unsub_url, hrefs, text), "in the HTML and text parts"),
        ("postal-address", _postal_address(address, html_text, text_flat), "in the HTML and text parts"),
        ("text-headings", _text_headings(issue, html_text, text_flat), f"all {headings} headings in both parts"),
        ("text-length", _text_length(html_text, text_flat), words),
    ]
    findings = [f for rule, problems, ok in rules for f in _rule(rule, problems, ok, language)]
    return Report(findings)


# --- Screenshots --------------------------------------------------------------------------------


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def take_screenshots(
    html_file: Path, out_dir: Path, stem: str, language: str | None = None
) -> tuple[dict[str, Path], list[Finding]]:
    """PNGs of the email HTML at desktop and phone widths; a missing or failing browser never raises."""
    browser = find_browser()
    if browser is None:
        note = "skipped: no chromium found (apt-get install chromium, then run preview again)"
        return {}, [Finding("info", "screenshots", note, language)]
    files: dict[str, Path] = {}
    findings: list[Finding] = []
    # Throw-away profiles: never touch (or wait on) the user's running browser.
    with tempfile.TemporaryDirectory(prefix="newsletter-preview-") as profiles:
        running: dict[str, tuple[Path, subprocess.Popen | str]] = {}
        for view, (width, height) in VIEWPORTS.items():
            png = (out_dir / f"{stem}.{view}.png").resolve()
            png.unlink(missing_ok=True)  # so an old file is never taken for a new one
            cmd = [
                browser,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                f"--user-data-dir={profiles}/{view}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                html_file.resolve().as_uri(),
            ]
            try:  # both at once: browser start-up is most of the time
                proc: subprocess.Popen | str = subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
            except OSError as exc:
                proc = str(exc)
            running[view] = (png, proc)
        for view, (png, proc) in running.items():
            failure = proc if isinstance(proc, str) else _wait(proc)
            if failure is None and not png.is_file():
                failure = "no file written"
            if failure:
                failed = f"{view} {VIEWPORTS[view][0]} px failed: {failure}"
                findings.append(Finding("warning", "screenshots", failed, language))
            else:
                files[f"screenshot-{view}"] = png
    if files:
        made = [view for view in VIEWPORTS if f"screenshot-{view}" in files]
        findings.append(Finding("ok", "screenshots", ", ".join(f"{v} {VIEWPORTS[v][0]} px" for v in made), language))
    return files, findings


def _wait(proc: subprocess.Popen) -> str | None:
    """None when the browser exited cleanly, else why not."""
    try:
        _, err = proc.communicate(timeout=SCREEN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"no answer within {SCREEN_TIMEOUT} s"
    if proc.returncode:
        return f"exit {proc.returncode}: {_short((err.strip().splitlines() or ['no output'])[-1], 120)}"
    return None


# --- The command --------------------------------------------------------------------------------


def preview(
    path: Path,
    *,
    out_dir: Path,
    screenshots: bool = False,
    sender_name: str = Sample.sender_name,
    sender_address: str = Sample.sender_address,
    web_base_url: str = Sample.web_base_url,
    unsubscribe_base_url: str = Sample.unsubscribe_base_url,
    unsubscribe_mailto: str = Sample.unsubscribe_mailto,
    list_name: str | None = None,
    audience: Mapping[str, int] | None = None,
) -> PreviewResult:
    """Render, check and write every language of one issue document (with the translation files
    kept beside it, as `publish` reads them); sends nothing. `audience`: the list's active readers
    per language tag, to say who falls back to the default.

    Raises InvalidIssue for a document publishing would refuse, OSError if it cannot be read.
    """
    from . import translations

    sample = Sample(sender_name, sender_address, web_base_url, unsubscribe_base_url, unsubscribe_mailto, list_name)
    issue = read_document(Path(path))
    variants = render_all(issue, sample)
    multilingual = len(variants) > 1
    report = Report()
    for language, rule, problems, ok in translations.check(issue, audience) if multilingual else []:
        report.findings.extend(_rule(rule, problems, ok, language))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if screenshots and find_browser() is None:
        screenshots = False  # said once, not once per language
        report.findings.extend(take_screenshots(out_dir / "none.html", out_dir, issue.issue_id)[1])
    for v in variants:
        label = v.language if multilingual else None
        message = sample_message(v.prepared, sample)
        report.findings.extend(check(v.issue, v.rendered, message, label).findings)
        html, text, _ = parts(message)
        stem = f"{issue.issue_id}.{v.translation}" if v.translation else issue.issue_id
        key = f"{v.translation} {{}}" if v.translation else "{}"
        written = {
            "html": (out_dir / f"{stem}.html", html),
            "text": (out_dir / f"{stem}.txt", text),
            "web": (out_dir / f"{stem}.web.html", v.rendered.web),
            "eml": (out_dir / f"{stem}.eml", message),
        }
        for kind, (file, body) in written.items():
            if isinstance(body, bytes):
                file.write_bytes(body)
            else:
                file.write_text(body, encoding="utf-8")
            files[key.format(kind)] = file
        if screenshots:
            shots, notes = take_screenshots(written["html"][0], out_dir, stem, label)
            files.update((key.format(kind), file) for kind, file in shots.items())
            report.findings.extend(notes)
    return PreviewResult(issue=issue, report=report, files=files)


def read_document(path: Path) -> Issue:
    """The document with its translation files merged, validated as the publish function would."""
    from .publishing import merged, translation_files

    raw = path.read_bytes()
    siblings = translation_files(path)
    if siblings:
        raw = merged(raw, siblings)
    return parse_document(raw, max_bytes=PublishSettings.max_issue_bytes)


_STYLE = {"error": "bold red", "warning": "yellow", "ok": "green", "info": "cyan"}


def print_report(console: Console, result: PreviewResult) -> None:
    """The checklist, a summary line and the files written."""
    from rich.table import Table
    from rich.text import Text

    # Text(), not markup: subjects, link texts and URLs may contain '[' and ']'.
    table = Table(title=Text(f"Preview of {result.issue.issue_id}: {result.issue.subject}"), title_justify="left")
    by_language = any(f.language for f in result.report.findings)
    table.add_column("Level", no_wrap=True)
    if by_language:
        table.add_column("Lang", no_wrap=True)
    table.add_column("Rule", no_wrap=True)
    table.add_column("Message")
    for f in result.report.findings:
        language = [Text(f.language or "all")] if by_language else []
        table.add_row(Text(f.level, style=_STYLE.get(f.level, "")), *language, Text(f.rule), Text(f.message))
    console.print(table)
    errors, warnings = len(result.report.errors), len(result.report.warnings)
    summary = Text(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    summary.stylize("bold red" if errors else "yellow" if warnings else "green")
    console.print(summary)
    for kind, file in result.files.items():
        console.print(Text(f"  {kind:<19} {file}"))
