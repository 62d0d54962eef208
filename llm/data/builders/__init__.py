"""TFDS builders over corpora that ship inside installable packages (no downloads), and over
files you bring (FILE_BUILDERS: `corpus="conll"` or `"squad"` with `data_files.train=PATH` etc.).
"""
from llm.data.builders.aclsum_qa import AclsumQa
from llm.data.builders.aclsum_summary import AclsumSummary
from llm.data.builders.bbc_headlines import BbcHeadlines
from llm.data.builders.bbc_news import BbcNews
from llm.data.builders.bible_en_es import BibleEnEs, BibleEsEn
from llm.data.builders.conll import ConllNer
from llm.data.builders.fortunes import Fortunes
from llm.data.builders.gensim_text import GensimText
from llm.data.builders.linux_docs import LinuxDocs
from llm.data.builders.moby_dick import MobyDick
from llm.data.builders.python_docs import PythonDocs
from llm.data.builders.sotu import Sotu
from llm.data.builders.spam_assassin import SpamAssassin
from llm.data.builders.squad import SquadJson
from llm.data.builders.tweet_sentiment import TweetSentiment
from llm.data.builders.twitter_ner import TwitterNer
from llm.data.builders.web_bible import WebBible

BUILDERS = {"gensim_text": GensimText, "bbc_news": BbcNews, "tweet_sentiment": TweetSentiment,
            "spam_assassin": SpamAssassin, "twitter_ner": TwitterNer,
            "aclsum_qa": AclsumQa, "aclsum_summary": AclsumSummary,
            # EN-ES translation (scripts/setup.sh --corpora unpacks the two Bibles)
            "bible_en_es": BibleEnEs, "bible_es_en": BibleEsEn, "bbc_headlines": BbcHeadlines,
            # Unlabeled pretraining corpora (scripts/setup.sh --corpora), alone or in a mixture
            "linux_docs": LinuxDocs, "python_docs": PythonDocs, "fortunes": Fortunes,
            "sotu": Sotu, "moby_dick": MobyDick, "web_bible": WebBible}
FILE_BUILDERS = {"conll": ConllNer, "squad": SquadJson}
