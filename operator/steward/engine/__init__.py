"""The reconciler: decisions from spec + observation, and the ``Service`` that applies them."""
