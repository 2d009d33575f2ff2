"""Re-identification: which known individual is this? (pipeline step 3)

`catalog.py` (the `Catalog`: enrolled photos, `search`/`rank`), `matching.py` (global cosine,
local vote, geometric verification, fusion), `local_features.py` (RootSIFT and RANSAC
verification), `vote_index.py` (the faiss descriptor index), `calibrate.py` (fusion weights,
open-set threshold and probability map, fitted per model) and `explain.py` (the inlier pairs a
reviewer sees). Nothing here imports torch.
"""
