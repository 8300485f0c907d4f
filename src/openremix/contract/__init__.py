"""Public request/response models and the error tree of the wire contract."""
