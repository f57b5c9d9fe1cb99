"""Captions for labelled data, so a text-conditioned model can train on class labels: every class gets several
phrasings (templates x names for the class), and some phrasings are held out of training, to measure whether
prompts carry over to wordings the model never saw ("a pair of running shoes" -> a sneaker).

    caps = captions(spec)
    caps.train[7]        # ['a sneaker', 'a photo of a sneaker', ..., 'a product photo of a sports shoe']
    caps.held_out[7]     # ['a pair of running shoes', 'a drawing of a sneaker']

Fashion-MNIST has hand-written names and held-out phrasings per class; other labelled data uses its class
names with the templates.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GenlabError
from .spec import DataSpec

TEMPLATES = ("{a} {name}", "a photo of {a} {name}", "a picture of {a} {name}", "an image of {a} {name}",
             "a black and white photo of {a} {name}", "a product photo of {a} {name}")
HELD_OUT_TEMPLATE = "a drawing of {a} {name}"  # a template never used in training, on the class's first name
# Words that say nothing of the class, put before the name in extra training captions (`modifiers=True`): the
# model learns that a word it does not know need not change what it draws. None is a word of a held-out phrasing.
MODIFIERS = ("new", "old", "black", "white", "grey", "small", "large", "cheap", "classic", "modern", "simple",
             "clean")

# Fashion-MNIST (Xiao et al. 2017): names used in training captions, and one held-out description per class
# whose wording is not in any training caption.
FASHION_NAMES = (  # footwear has "pair of" names too, or "pair of" alone would mean trousers
    ("t-shirt", "top", "tee shirt"),
    ("pair of trousers", "pair of pants", "trouser"),
    ("pullover", "sweater", "jumper"),
    ("dress", "frock", "gown"),
    ("coat", "jacket", "overcoat"),
    ("sandal", "pair of sandals", "strappy sandal"),
    ("shirt", "blouse", "collared shirt"),
    ("sneaker", "pair of sneakers", "sports shoe"),
    ("bag", "handbag", "purse"),
    ("ankle boot", "pair of boots", "short boot"),
)
FASHION_HELD_OUT = (
    "a plain short-sleeved tee",
    "a pair of blue jeans",
    "a warm knitted woolly jumper",
    "a long evening dress",
    "a warm winter parka",
    "a pair of summer flip-flops",
    "a button-down office shirt",
    "a pair of running shoes",
    "a leather tote bag",
    "a leather ankle boot",
)


def article(word: str) -> str:
    """'a' or 'an' before a word, by its first letter (enough for class names)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def phrase(template: str, name: str) -> str:
    return template.format(a=article(name), name=name)


@dataclass(frozen=True)
class Captions:
    train: tuple[tuple[str, ...], ...]  # per class, the phrasings training draws from
    held_out: tuple[tuple[str, ...], ...]  # per class, phrasings never seen in training

    def default(self, label: int) -> str:
        """The caption sampling uses for a class when no prompt is given: its first training phrasing."""
        return self.train[label][0]


def captions(spec: DataSpec, modifiers: bool = False) -> Captions:
    """Training and held-out captions for each class of labelled data; modifiers: also every training caption
    with each of MODIFIERS before the name ("a photo of a cheap sneaker"), after the plain ones."""
    k = int(spec.num_classes or 0)
    if not k:
        raise GenlabError(f"text conditioning trains on captions of class labels; {spec.name} has no labels")
    if spec.name == "fashion-mnist" and k == len(FASHION_NAMES):
        names = FASHION_NAMES
        held = [(FASHION_HELD_OUT[i], phrase(HELD_OUT_TEMPLATE, names[i][0])) for i in range(k)]
    else:
        class_names = list(spec.class_names or [str(i) for i in range(k)])
        names = tuple((str(n).lower(),) for n in class_names)
        held = [(phrase(HELD_OUT_TEMPLATE, names[i][0]),) for i in range(k)]
    words = ("",) + (tuple(f"{m} " for m in MODIFIERS) if modifiers else ())
    train = tuple(tuple(phrase(t, w + n) for w in words for n in names[i] for t in TEMPLATES) for i in range(k))
    return Captions(train, tuple(held))
