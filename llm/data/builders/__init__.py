"""TFDS builders over corpora that ship inside installable packages (no downloads).

`ConllNer` (CoNLL-2003-format files of your own) needs file paths, so it is built directly rather
than named by `config.corpus`.
"""
from llm.data.builders.bbc_news import BbcNews
from llm.data.builders.gensim_text import GensimText
from llm.data.builders.spam_assassin import SpamAssassin
from llm.data.builders.tweet_sentiment import TweetSentiment
from llm.data.builders.twitter_ner import TwitterNer

BUILDERS = {"gensim_text": GensimText, "bbc_news": BbcNews, "tweet_sentiment": TweetSentiment,
            "spam_assassin": SpamAssassin, "twitter_ner": TwitterNer}
