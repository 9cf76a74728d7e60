"""cir_lib: a reproducibility kit for CLIP-based composed image retrieval (CLIP4Cir).

Glossary used everywhere in the kit:
  reference  the query's image            caption   the relative text of the query
  target     the image the query asks for query     reference + caption
  index      the gallery ranked per query triplet   reference, caption, target
  split      train / val / test (test1)   category  FashionIQ's dress / shirt / toptee
"""

__version__ = "0.1.0"
