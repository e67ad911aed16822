"""Corpus data shipped with adversary (installed as `adversary.corpora`); `starter/` is the starter corpus."""
