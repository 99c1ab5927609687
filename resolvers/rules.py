"""Input rules shared by the mutations and the importer: whatever way a value comes in, the
same rule refuses it with the same message. They raise `RuleBroken`, a plain ValueError, so
that the importer uses them without GraphQL; a resolver's RuleBroken leaves as
BAD_USER_INPUT (schema/errors.py). A message names the rule in the domain's words, not a
field's spelling in one format: the caller puts where the value was in front of it
(`at(where, ...)`)."""

import base64
import binascii
import re
import unicodedata
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from sessiongraph.models.fields import MAX_INT
from sessiongraph.models.search_text import MIN_TERM, fold

MAX_TITLE_LENGTH = 60
MAX_EXTERNAL_ID_LENGTH = 255
MAX_NAME_LENGTH = 255  # task, workflow and agent ids, dedup keys
MAX_TYPE_LENGTH = 64
MAX_CONTENT_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_METADATA_BYTES = 64 * 1024
# How deep a JSON value (a payload, metadata, a JSON detail) may nest its objects and arrays:
# {"a": [1]} is 2 deep. Far beyond what any agent writes, and far within what every reader
# (orjson writes at most 254 levels a response, Python's json about 1,000) can take.
MAX_JSON_DEPTH = 64
# The largest token figure: GraphQL's Int. A session's tokensUsed is the sum of its turns',
# so that sum is held to it too.
MAX_TOKENS = MAX_INT
_INVISIBLE = {"\u200b", "\ufeff"}
# Unicode's White_Space property (PropList.txt); str.isspace() adds U+001C..U+001F.
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
# Unicode's control characters (category Cc) are exactly these two ranges.
NUL = "\x00"  # what no stored text may hold (`check_no_nul`)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class RuleBroken(ValueError):
    """A value breaks an input rule; the message names the rule."""


@contextmanager
def at(where: str):
    """Puts `where` (the value's place in its input: "events[2]") in front of the message of
    a rule broken inside."""
    try:
        yield
    except RuleBroken as broken:
        raise RuleBroken(f"{where}: {broken}") from None


def sanitize_title(title: str) -> str:
    """Trimmed of Unicode White_Space, then stripped of control characters (Cc), U+200B and
    U+FEFF; RuleBroken, naming the rule, when empty or longer than 60 code points."""
    trimmed = title.strip(WHITE_SPACE)
    if not trimmed:
        raise RuleBroken("The title is empty after trimming white space.")
    cleaned = "".join(c for c in trimmed if c not in _INVISIBLE and unicodedata.category(c) != "Cc")
    if not cleaned:
        raise RuleBroken("The title is empty after removing control characters.")
    if len(cleaned) > MAX_TITLE_LENGTH:
        raise RuleBroken(f"The title is longer than {MAX_TITLE_LENGTH} characters ({len(cleaned)}).")
    return cleaned


def check_external_id(external_id: str, what: str = "external id") -> str:
    """An external id (or a red-team runner id, `what`, which becomes one): 1..255
    characters, no control character."""
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise RuleBroken(f"The {what} is longer than {MAX_EXTERNAL_ID_LENGTH} characters.")
    if not external_id or CONTROL.search(external_id):
        raise RuleBroken(f"The {what} must be non-empty and have no control character.")
    return external_id


def is_name(value: str) -> bool:
    """Whether `check_name` takes `value` (for a caller's fast path)."""
    # A printable string has no control character: most names, told at C speed.
    return len(value) <= MAX_NAME_LENGTH and bool(value.strip()) and (value.isprintable() or not CONTROL.search(value))


def check_name(value: str | None, what: str) -> str | None:
    """A caller's identifier (`what`: "task id", "workflow id", "agent id", "dedup key"):
    None stays None; else not blank, no control character, at most 255 characters (the rule
    of a short free text, `check_text`)."""
    return check_text(value, what)


def is_event_type(value: str) -> bool:
    return len(value) <= MAX_TYPE_LENGTH and value.isprintable() and bool(value.strip())


def check_event_type(value: str) -> str:
    if not is_event_type(value):
        raise RuleBroken(f"The event type must be 1 to {MAX_TYPE_LENGTH} printable characters.")
    return value


def event_content(message: str | None, message_base64: str | None) -> bytes | None:
    """An event's content: its message's UTF-8, or its base64 message decoded; at most one of
    the two, at most 1 MiB."""
    if message is not None and message_base64 is not None:
        raise RuleBroken("An event has both a message and a base64 message; give at most one.")
    content = None
    if message is not None:
        check_no_nul(message, "message")  # raw bytes, NUL included, come base64
        content = message.encode("utf-8", "surrogatepass")
    elif message_base64 is not None:
        try:
            content = base64.b64decode(message_base64, validate=True)
        except (binascii.Error, ValueError):  # or a character beyond ASCII
            raise RuleBroken("The base64 message is not base64.") from None
    if content is not None and len(content) > MAX_CONTENT_BYTES:
        raise RuleBroken(f"The event has more than {MAX_CONTENT_BYTES} bytes of content.")
    return content


def json_depth(value) -> int:
    """How deep `value` nests objects and arrays (a scalar: 0, {} or [1]: 1), found without
    recursion, so a value of any depth is measured; past MAX_JSON_DEPTH the walk stops (the
    answer then says only "deeper")."""
    deepest = 0
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is dict:
            depth += 1
            for child in item.values():
                push((child, depth))
        elif kind is list:
            depth += 1
            for child in item:
                push((child, depth))
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:  # no need to walk the rest
                break
    return deepest


def _check_depth(value, what: str) -> None:
    if json_depth(value) > MAX_JSON_DEPTH:
        raise RuleBroken(f"The {what} nests objects and arrays deeper than {MAX_JSON_DEPTH} levels.")


def _nul_in_json(what: str) -> RuleBroken:
    return RuleBroken(f"The {what} holds the character U+0000 (NUL) in a string or key; text may not hold it.")


def check_json(value, what: str):
    """A JSON value to store, as `json_size` holds it but without its size (the importer's
    JSON values): nested at most 64 deep, no U+0000 in any string or key; None stays None."""
    if value is None:
        return None
    _check_depth(value, what)
    if _json_holds_nul(value):
        raise _nul_in_json(what)
    return value


def json_size(value, what: str) -> int:
    """The bytes of a JSON value as stored: nested at most 64 deep (measured first: orjson
    writes no more than 254 levels), no U+0000 in any string or key."""
    _check_depth(value, what)
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        raise RuleBroken(f"The {what} is not JSON.") from None
    if b"\\u0000" in encoded and _json_holds_nul(value):  # encoded as \u0000: looked for only then
        raise _nul_in_json(what)
    return len(encoded)


def _json_holds_nul(value) -> bool:
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            if NUL in current:
                return True
        elif isinstance(current, dict):
            pending += current.keys()
            pending += current.values()
        elif isinstance(current, list):
            pending += current
    return False


def check_no_nul(value: str | None, what: str) -> str | None:
    """Text given as text (a turn's query and result, an event's message; every string and
    key of a JSON value, by `json_size`): no U+0000. PostgreSQL's text and jsonb cannot hold
    it; SQLite could, and is held to the same rule so that both databases take the same
    input, as the importer does. Raw bytes, NUL included, come as an event's base64 message."""
    if value is not None and NUL in value:
        raise RuleBroken(f"The {what} holds the character U+0000 (NUL); text may not hold it.")
    return value


def check_payload(payload):
    if payload is not None and json_size(payload, "payload") > MAX_PAYLOAD_BYTES:
        raise RuleBroken(f"The payload is larger than {MAX_PAYLOAD_BYTES} bytes.")
    return payload


def check_metadata(metadata) -> dict:
    """A session's metadata: a JSON object ({} for None) of at most 64 KiB."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise RuleBroken("The metadata must be a JSON object.")
    if json_size(metadata, "metadata") > MAX_METADATA_BYTES:
        raise RuleBroken(f"The metadata is larger than {MAX_METADATA_BYTES} bytes.")
    return metadata


def check_count(value: int | None, what: str) -> int | None:
    """A token budget, tokens used: None, or 0 or more."""
    if value is not None and value < 0:
        raise RuleBroken(f"The {what} must be 0 or more.")
    return value


MIN_LINK_SECONDS, MAX_LINK_SECONDS = 1, 3600


def check_link_expiry(seconds: int | None) -> int:
    """How long a download link lives (Session.download's expiresInSeconds): 1..3600."""
    if seconds is None or not MIN_LINK_SECONDS <= seconds <= MAX_LINK_SECONDS:
        raise RuleBroken(f"expiresInSeconds must be between {MIN_LINK_SECONDS} and {MAX_LINK_SECONDS}.")
    return seconds


TOKENS_OVER = (
    f"The session's tokens used, the sum of its turns', would pass {MAX_TOKENS:,} (the largest Int); "
    "nothing was changed."
)


def check_session_tokens(stored: int, change: int) -> int:
    """A session's tokens used after a turn adds `change` to the `stored` sum: at most
    2^31-1, whatever the database (SQLite's integers would take more, PostgreSQL's not)."""
    total = stored + change
    if total > MAX_TOKENS:
        raise RuleBroken(TOKENS_OVER)
    return total


def check_completion(started, completed):
    """A turn's end: not before its start."""
    if completed is not None and completed < started:
        raise RuleBroken("A turn cannot end before it started.")
    return completed


# -- session kinds (kinds.graphql): TERMINAL and RED_TEAM details, status, costs

MAX_COST_USD = 1_000_000
MICROS_A_DOLLAR = 1_000_000  # costs are kept in whole millionths (models/fields.MICROS)
MAX_TERMINAL_SIZE = 65_535  # a terminal's columns and rows are 16-bit (TIOCGWINSZ)
MAX_CONTEXT_PROMPT_COUNT = 100
MAX_TEXT_BYTES = 1024 * 1024  # a terminal's input, a prepared prompt: as an event's content
MAX_DETAIL_BYTES = 64 * 1024  # a JSON detail (AI analysis, masking figures, tags): as metadata
SETTINGS = ("attack_module", "context_strategy", "context_strategy_prompt_count", "prompt_template", "metric", "system_prompt")
GUARDRAIL_DIRECTIONS = ("INPUT", "OUTPUT")


def check_kind(kind: str, terminal: bool, red_team: bool) -> str:
    """Which details go with which kind: TERMINAL needs terminal details, RED_TEAM red-team
    details, AGENT neither; any other pairing is refused."""
    if kind == "TERMINAL" and not terminal:
        raise RuleBroken("A TERMINAL session needs its terminal details.")
    if kind == "RED_TEAM" and not red_team:
        raise RuleBroken("A RED_TEAM session needs its red-team details.")
    if terminal and kind != "TERMINAL":
        raise RuleBroken(f"Terminal details go with a TERMINAL session, not a {kind} one.")
    if red_team and kind != "RED_TEAM":
        raise RuleBroken(f"Red-team details go with a RED_TEAM session, not a {kind} one.")
    return kind


def check_new_status(status: str) -> str:
    """createSession's status: a session starts READY or OPEN; it is ended by endSession."""
    if status == "DONE":
        raise RuleBroken("A session is created READY or OPEN; endSession ends it.")
    return status


def check_end(created, ended):
    """A session's end: not before its creation."""
    if ended is not None and ended < created:
        raise RuleBroken("A session cannot end before it was created.")
    return ended


def check_ended_status(status: str, ended) -> None:
    """Only a DONE session has an end time."""
    if ended is not None and status != "DONE":
        raise RuleBroken(f"Only a DONE session has an end time; this one is {status}.")


ENDED = "The session has ended (status DONE): it takes no more turns, turn completions or events."


def check_not_ended(status: str) -> None:
    """No turns, completions or events on a DONE session."""
    if status == "DONE":
        raise RuleBroken(ENDED)


def check_text(value: str | None, what: str, limit: int = MAX_NAME_LENGTH) -> str | None:
    """A short free text (a resource's name, an email, a guardrail rule): None stays None;
    else not blank, no control character, at most `limit` characters."""
    if value is None:
        return None
    if not value.strip() or CONTROL.search(value):
        raise RuleBroken(f"The {what} must be non-empty and have no control character.")
    if len(value) > limit:
        raise RuleBroken(f"The {what} is longer than {limit} characters.")
    return value


def text_size(value: str | None, what: str) -> int:
    """The UTF-8 bytes of a long text (a terminal's input, a prepared prompt), at most 1 MiB."""
    if value is None:
        return 0
    check_no_nul(value, what)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise RuleBroken(f"The {what} is larger than {MAX_TEXT_BYTES} bytes.")
    return size


def check_detail(value, what: str):
    """A JSON detail stored as given (an AI analysis): at most 64 KiB."""
    if value is not None and json_size(value, what) > MAX_DETAIL_BYTES:
        raise RuleBroken(f"The {what} is larger than {MAX_DETAIL_BYTES} bytes.")
    return value


def check_terminal_size(value: int | None, what: str) -> int | None:
    if value is not None and not 1 <= value <= MAX_TERMINAL_SIZE:
        raise RuleBroken(f"The terminal's {what} must be between 1 and {MAX_TERMINAL_SIZE}.")
    return value


def check_tags(tags) -> dict:
    """A resource's tags: a JSON object of string values ({} for None)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise RuleBroken("The resource tags must be a JSON object of string values.")
    check_detail(tags, "resource tags")
    return tags


def cost_micros(cost) -> int | None:
    """A cost in US dollars -> whole millionths (exact: 0.1 is 100,000): 0..1,000,000 with
    at most 6 decimals. The decimal text of the number is what is read, so a float's binary
    error never reaches the sums."""
    if cost is None:
        return None
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        raise RuleBroken("The cost must be a number of US dollars.")
    micros = Decimal(repr(cost)) * MICROS_A_DOLLAR  # repr: the shortest text that is the float
    if not micros.is_finite() or not 0 <= micros <= MAX_COST_USD * MICROS_A_DOLLAR:
        raise RuleBroken(f"The cost must be between 0 and {MAX_COST_USD:,} US dollars.")
    if micros != micros.to_integral_value():
        raise RuleBroken("The cost has more than 6 decimals (a millionth of a dollar).")
    return int(micros)


def check_settings(settings: dict | None, base: dict | None = None) -> dict | None:
    """Red-team settings given field by field (snake_case keys; a key left out keeps the
    `base` value, a key given as None clears it) merged over `base` -> the stored object
    (only the settings that are set). The prompt count is 0..100, the others texts."""
    if settings is None:
        return base
    merged = dict(base or {})
    for key, value in settings.items():
        if key not in SETTINGS:
            raise RuleBroken(f"{key!r} is not a red-team setting (one of {', '.join(SETTINGS)}).")
        if value is None:
            merged.pop(key, None)
        elif key == "context_strategy_prompt_count":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONTEXT_PROMPT_COUNT:
                raise RuleBroken(f"The context strategy prompt count must be between 0 and {MAX_CONTEXT_PROMPT_COUNT}.")
            merged[key] = value
        else:
            if not isinstance(value, str):
                raise RuleBroken(f"The red-team setting {key} must be text.")
            text_size(value, f"red-team setting {key}")
            merged[key] = value
    return merged


def check_endpoints(endpoints: list) -> list[str]:
    """A red-team run's endpoints: at least one, distinct, each 1..255 characters."""
    if not endpoints:
        raise RuleBroken("A red-team session needs at least one endpoint.")
    for endpoint in endpoints:
        if not isinstance(endpoint, str):
            raise RuleBroken("An endpoint must be text.")
        check_text(endpoint, "endpoint")
    if len(set(endpoints)) != len(endpoints):
        twice = next(e for i, e in enumerate(endpoints) if e in endpoints[:i])
        raise RuleBroken(f"The endpoint {twice!r} is given twice.")
    return endpoints


def check_runner_id(runner_id: str) -> str:
    return check_external_id(runner_id, "runner id")


def check_turn_endpoint(kind: str, endpoints: list[str] | None, endpoint: str | None) -> str | None:
    """A turn's endpoint: required on a RED_TEAM session (every prompt goes to one: the
    chats are by endpoint), one of the session's endpoints; none on another kind."""
    if kind != "RED_TEAM":
        if endpoint is not None:
            raise RuleBroken(f"Only a RED_TEAM session's turns have an endpoint; this session is {kind}.")
        return None
    if endpoint is None:
        raise RuleBroken("A RED_TEAM session's turn needs the endpoint its prompt went to.")
    if endpoint not in (endpoints or ()):
        raise RuleBroken(f"The endpoint {endpoint!r} is not one of the session's endpoints ({', '.join(endpoints or ())}).")
    return endpoint


def check_turn_settings(kind: str, settings) -> None:
    if settings is not None and kind != "RED_TEAM":
        raise RuleBroken(f"Only a RED_TEAM session's turns have red-team settings; this session is {kind}.")


def check_guardrail(rule: str, direction: str, matched_words: list | None) -> dict:
    """One guardrail match, as stored."""
    check_text(rule, "guardrail rule")
    if direction not in GUARDRAIL_DIRECTIONS:
        raise RuleBroken("A guardrail's direction is INPUT or OUTPUT.")
    words = matched_words or []
    if not all(isinstance(w, str) for w in words):
        raise RuleBroken("A guardrail's matched words must be texts.")
    return {"rule": rule, "direction": direction, "matched_words": list(words)}


def check_data_masking(error_count, info_types, total_redact_count, transformed_bytes) -> dict:
    """The masking figures, as stored: counts 0 or more, info types an object of counts."""
    for value, what in ((error_count, "error count"), (total_redact_count, "total redact count"),
                        (transformed_bytes, "transformed bytes")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RuleBroken(f"The data masking's {what} must be a whole number, 0 or more.")
    if not isinstance(info_types, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in info_types.values()
    ):
        raise RuleBroken("The data masking's info types must be a JSON object of counts (0 or more).")
    check_detail(info_types, "data masking's info types")
    return {
        "error_count": error_count,
        "info_types": info_types,
        "total_redact_count": total_redact_count,
        "transformed_bytes": transformed_bytes,
    }


def check_review_decision(group: str, status: str, reviewer_email: str | None, decided_at) -> dict:
    """One review decision, as stored (`decided_at` a datetime, stored as ISO text)."""
    check_text(group, "review group")
    check_text(reviewer_email, "reviewer email")
    return {
        "group": group,
        "status": status,
        "reviewer_email": reviewer_email,
        "decided_at": None if decided_at is None else decided_at.isoformat(),
    }


# -- the details as stored, from their snake_case form (an import line's objects; the
# mutations' inputs turned into the same): each value checked, the message naming it.

VERBS = ("EXEC", "CONNECT")
REVIEW_STATUSES = ("PENDING", "APPROVED", "REJECTED", "REVOKED")


def _one_of(value, allowed: tuple, what: str):
    if value not in allowed:
        raise RuleBroken(f"The {what} is one of {', '.join(allowed)}.")
    return value


def _int(value, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31):
        raise RuleBroken(f"The {what} must be a whole number (32 bits).")
    return value


def _str(value, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RuleBroken(f"The {what} must be text.")
    return value


def _object(value, what: str) -> dict:
    if value is not None and not isinstance(value, dict):
        raise RuleBroken(f"The {what} must be a JSON object.")
    return value or {}


def to_time(value, what: str):
    """A datetime, or ISO-8601 text read as one (UTC when it names no zone)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(_str(value, what))
    except ValueError:
        raise RuleBroken(f"The {what} is not an ISO-8601 timestamp.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def review_columns(review: dict | None, now: datetime) -> dict:
    """A TERMINAL session's review -> its columns (None: no review); created now when the
    review does not say when."""
    if review is None:
        return {"review_status": None, "review_created_at": None, "review_decisions": None}
    review = _object(review, "review")
    decisions = review.get("decisions") or []
    if not isinstance(decisions, list):
        raise RuleBroken("The review's decisions must be a list.")
    stored = []
    for d in decisions:
        d = _object(d, "review decision")
        stored.append(check_review_decision(
            _str(d.get("group"), "review group") or "",
            _one_of(d.get("status"), REVIEW_STATUSES, "review decision's status"),
            _str(d.get("reviewer_email"), "reviewer email"),
            to_time(d.get("decided_at"), "review decision's time"),
        ))
    return {
        "review_status": _one_of(review.get("status"), REVIEW_STATUSES, "review's status"),
        "review_created_at": to_time(review.get("created_at"), "review's creation time") or now,
        "review_decisions": stored,
    }


def guardrail_list(guardrails: list | None) -> list[dict]:
    """Guardrail matches as stored ([] for None)."""
    if guardrails is None:
        return []
    if not isinstance(guardrails, list):
        raise RuleBroken("The guardrails must be a list of matches.")
    stored = []
    for g in guardrails:
        g = _object(g, "guardrail match")
        stored.append(check_guardrail(_str(g.get("rule"), "guardrail rule") or "", g.get("direction"), g.get("matched_words")))
    return stored


def data_masking_of(masking: dict | None) -> dict | None:
    if masking is None:
        return None
    masking = _object(masking, "data masking")
    return check_data_masking(
        masking.get("error_count"), masking.get("info_types"), masking.get("total_redact_count"),
        masking.get("transformed_bytes"),
    )


def terminal_columns(terminal: dict, now: datetime) -> dict:
    """A TERMINAL session's details (the contract's TerminalInput, or an import line's
    `terminal`, in snake_case) -> the session's columns."""
    terminal = _object(terminal, "terminal details")
    resource = terminal.get("resource")
    if resource is None:
        raise RuleBroken("A TERMINAL session needs the resource (connection) it went through.")
    resource = _object(resource, "resource")
    given_input = _str(terminal.get("input"), "terminal input")
    return {
        "verb": _one_of(terminal.get("verb"), VERBS, "terminal verb"),
        "exit_code": _int(terminal.get("exit_code"), "exit code"),
        "terminal_input": given_input,
        "input_size": text_size(given_input, "terminal input"),
        "terminal_columns": check_terminal_size(_int(terminal.get("columns"), "terminal's columns"), "columns"),
        "terminal_rows": check_terminal_size(_int(terminal.get("rows"), "terminal's rows"), "rows"),
        "user_email": check_text(_str(terminal.get("user_email"), "user email"), "user email"),
        "user_display_name": check_text(_str(terminal.get("user_display_name"), "user display name"), "user display name"),
        "user_subject": check_text(_str(terminal.get("user_subject"), "user subject"), "user subject"),
        "machine_identity_id": check_text(_str(terminal.get("machine_identity_id"), "machine identity id"), "machine identity id"),
        "resource_name": check_text(_str(resource.get("name"), "resource name") or "", "resource name"),
        "resource_type": check_text(_str(resource.get("type"), "resource type") or "", "resource type"),
        "resource_subtype": check_text(_str(resource.get("subtype"), "resource subtype"), "resource subtype"),
        "resource_resource_name": check_text(_str(resource.get("resource_name"), "resource's resource name"), "resource's resource name"),
        "resource_tags": check_tags(resource.get("tags")),
        **review_columns(terminal.get("review"), now),
        "data_masking": data_masking_of(terminal.get("data_masking")),
        "guardrails": guardrail_list(terminal.get("guardrails")),
        "ai_analysis": check_detail(terminal.get("ai_analysis"), "AI analysis"),
    }


def red_team_columns(red_team: dict) -> dict:
    """A RED_TEAM session's details (RedTeamInput, or an import line's `red_team`) -> its
    columns."""
    red_team = _object(red_team, "red-team details")
    endpoints = red_team.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        raise RuleBroken("The endpoints must be a list.")
    return {
        "runner_id": check_runner_id(_str(red_team.get("runner_id"), "runner id") or ""),
        "endpoints": check_endpoints(endpoints or []),
        "red_team_settings": check_settings(_object(red_team.get("settings"), "red-team settings"), {}),
    }


# -- the rule of each field the import format carries -------------------------------------


def _sized(what: str):
    def check(value: str | None) -> str | None:
        text_size(value, what)
        return value

    return check


def _named(what: str):
    return lambda value: check_name(value, what)


# The rule of each importable field (models/fields.py marks them) that a rule of its own
# governs, by (type, field): the importer applies it to the line's value, as the mutations
# apply the same function to their argument. Rules between fields (a turn's end and start,
# a session's kind and details, a turn's endpoint and its session's) stay with whoever holds
# both values.
FIELD_RULES = {
    ("Session", "title"): lambda value: None if value is None else sanitize_title(value),
    ("Session", "external_id"): lambda value: None if value is None else check_external_id(value),
    ("Session", "metadata"): check_metadata,
    ("Session", "batch_id"): _named("batch id"),
    ("Session", "correlation_id"): _named("correlation id"),
    ("Turn", "task_id"): _named("task id"),
    ("Turn", "workflow_id"): _named("workflow id"),
    ("Turn", "prepared_prompt"): _sized("prepared prompt"),
    ("Turn", "cost_usd"): cost_micros,
    ("Event", "type"): check_event_type,
    ("Event", "agent_id"): _named("agent id"),
    ("Event", "dedup_key"): _named("dedup key"),
    ("Event", "payload"): check_payload,
}


# -- search queries (searchEvents, SessionFilter.text; models/search.py folds and matches)

MAX_SEARCH_QUERY_LENGTH = 256
MAX_SEARCH_TERMS = 16


def search_terms(query: str) -> tuple[str, ...]:
    """A search query's terms, folded (models/search.fold): separated by white space, a term
    in double quotes may hold white space. Each term at least MIN_TERM characters once folded
    (the trigram indexes serve no shorter one), at most 16 terms and 256 characters."""
    if len(query) > MAX_SEARCH_QUERY_LENGTH:
        raise RuleBroken(f"A search query is at most {MAX_SEARCH_QUERY_LENGTH} characters; this one has {len(query)}.")
    if not _is_unicode(query):
        raise RuleBroken("A search query must be Unicode text (it holds a lone surrogate).")
    terms, position = [], 0
    while position < len(query):
        character = query[position]
        if character in WHITE_SPACE:
            position += 1
        elif character == '"':
            end = query.find('"', position + 1)
            if end < 0:
                raise RuleBroken('A search query\'s double quotes must be balanced: a quoted term ends with ".')
            terms.append(query[position + 1:end])
            position = end + 1
        else:
            end = position
            while end < len(query) and query[end] not in WHITE_SPACE and query[end] != '"':
                end += 1
            terms.append(query[position:end])
            position = end
    if not terms:
        raise RuleBroken("A search query needs at least one term.")
    if len(terms) > MAX_SEARCH_TERMS:
        raise RuleBroken(f"A search query has at most {MAX_SEARCH_TERMS} terms; this one has {len(terms)}.")
    folded = tuple(fold(term) for term in terms)
    for term, given in zip(folded, terms, strict=True):
        if len(term) < MIN_TERM:
            raise RuleBroken(f"A search term is at least {MIN_TERM} characters: {given!r} is shorter.")
    return folded


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
