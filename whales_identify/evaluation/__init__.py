"""Measuring re-identification: the protocol harness (`harness.py`), its metrics (`metrics.py`)
and the cross-fitted evaluation of trained models (`crossfit.py`). See docs/REID.md."""
