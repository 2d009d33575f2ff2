"""Training (the `train` extra: torch, torchvision, timm, scikit-learn).

`reid.py` fine-tunes an embedding for re-identification (`whales train`); `gate.py` fits the
gate's head (`whales gate train`) with `gate_synthetic.py` (synthetic negatives) and
`gate_calibration.py` (threshold and band). Serving never imports this package.
"""
