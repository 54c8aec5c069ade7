"""The standing adversarial suite: property-based fuzzing of the HTTP contract (see conftest.py)."""
