"""The PAN-X languages of the XTREME benchmark: name, script and family of each, for grouping
zero-shot results. XTREME evaluates PAN-X on 40 languages; Thai is listed but its test set is
not among the shared files here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str
    family: str  # the branch for Indo-European languages, else the family


_TABLE = """\
af Afrikaans Latin Germanic
ar Arabic Arabic Semitic
bg Bulgarian Cyrillic Slavic
bn Bengali Bengali Indo-Aryan
de German Latin Germanic
el Greek Greek Hellenic
en English Latin Germanic
es Spanish Latin Romance
et Estonian Latin Uralic
eu Basque Latin Basque
fa Persian Arabic Iranian
fi Finnish Latin Uralic
fr French Latin Romance
he Hebrew Hebrew Semitic
hi Hindi Devanagari Indo-Aryan
hu Hungarian Latin Uralic
id Indonesian Latin Austronesian
it Italian Latin Romance
ja Japanese Han+kana Japonic
jv Javanese Latin Austronesian
ka Georgian Georgian Kartvelian
kk Kazakh Cyrillic Turkic
ko Korean Hangul Koreanic
ml Malayalam Malayalam Dravidian
mr Marathi Devanagari Indo-Aryan
ms Malay Latin Austronesian
my Burmese Myanmar Sino-Tibetan
nl Dutch Latin Germanic
pt Portuguese Latin Romance
ru Russian Cyrillic Slavic
sw Swahili Latin Niger-Congo
ta Tamil Tamil Dravidian
te Telugu Telugu Dravidian
th Thai Thai Kra-Dai
tl Tagalog Latin Austronesian
tr Turkish Latin Turkic
ur Urdu Arabic Indo-Aryan
vi Vietnamese Latin Austroasiatic
yo Yoruba Latin Niger-Congo
zh Chinese Han Sino-Tibetan"""

LANGUAGES = {row.split()[0]: Language(*row.split()) for row in _TABLE.splitlines()}
XTREME_PANX = tuple(LANGUAGES)  # the 40 languages XTREME reports PAN-X on


def language(code: str) -> Language:
    """A known language, or one of unknown script and family (a folder may hold others)."""
    return LANGUAGES.get(code, Language(code, code, "other", "other"))
