"""Query composers on CLIP features: modules that turn a reference image's and a relative caption's
features into a query vector (`forward(image_features, text_features) -> (N, d)`) or into scores
against an index (`scores(image_features, text_features, index_features) -> (N, M)`).

`tirg.TIRG` (Vo et al., CVPR 2019) gives query vectors; `artemis.Artemis` (Delmas et al., ICLR 2022)
gives scores. See docs/composers.md for their equations, hyperparameters and sources.
"""
