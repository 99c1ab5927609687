"""Input rules shared by the mutations and the importer. They raise `RuleBroken`, a plain
ValueError, so that the importer uses them without GraphQL; a resolver's RuleBroken leaves as
BAD_USER_INPUT (schema/errors.py)."""

import unicodedata

MAX_TITLE_LENGTH = 60
MAX_EXTERNAL_ID_LENGTH = 255
_INVISIBLE = {"\u200b", "\ufeff"}
# Unicode's White_Space property (PropList.txt); str.isspace() adds U+001C..U+001F.
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


class RuleBroken(ValueError):
    """A value breaks an input rule; the message names the rule."""


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


def check_external_id(external_id: str) -> str:
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise RuleBroken(f"The external id is longer than {MAX_EXTERNAL_ID_LENGTH} characters.")
    if not external_id or any(unicodedata.category(c) == "Cc" for c in external_id):
        raise RuleBroken("The external id must be non-empty and have no control character.")
    return external_id
